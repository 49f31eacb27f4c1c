/* Included between the instantiations of lib/shutdown_impl.h in shutdown_model.cpp: forgets
 * the planted-bug switches the last one defined (the header defaults each one it finds unset).
 * No include guard: it is meant to be included again and again. */
#undef SD_SPAWN_FENCE
#undef SD_CLOSE_FENCE
#undef SD_CLEAN_PASSES
#undef SD_LEAVE_ORDER
#undef SD_EMPTY_ORDER
#undef SD_COUNT_FIRST
#undef SD_BEGUN_ORDER
#undef SD_LAST_WALK
