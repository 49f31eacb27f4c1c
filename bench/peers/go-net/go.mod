module weft/bench/peers/gonet

go 1.19
