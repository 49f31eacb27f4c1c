#!/usr/bin/env python3
"""Fails unless docs/api.md has one `### name` section per WEFT_EXTERN function of weft.h,
and no section for a function the header does not declare.
Usage: api_doc_check.py include/weft.h docs/api.md"""
import re
import sys


def main():
    header, doc = (open(p, encoding="utf-8").read() for p in sys.argv[1:3])
    # A declaration: WEFT_EXTERN (or a public static inline definition at the start of a line),
    # a return type, the name, "(" (the macro's own #define is not). weft__ names are private.
    declared = set(re.findall(r"^(?:WEFT_EXTERN|static inline)\b[^(;=]*?\b(weft_[a-z0-9]\w*)\s*\(",
                              header, re.M))
    documented = re.findall(r"^### (weft_\w+)\s*$", doc, re.M)
    problems = [f"no section for {n}" for n in sorted(declared - set(documented))]
    problems += [f"a section for {n}, which weft.h does not declare"
                 for n in sorted(set(documented) - declared)]
    problems += [f"two sections for {n}" for n in sorted({n for n in documented
                                                          if documented.count(n) > 1})]
    if not declared:
        problems.append("no WEFT_EXTERN function found in the header: the pattern is stale")
    for p in problems:
        print(f"docs/api.md: {p}")
    print(f"{len(declared)} public functions, {len(documented)} sections, {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
