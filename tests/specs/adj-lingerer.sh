#!/bin/bash
# Started detached by adj-lingerer.spec: a process that tries to outlive the step that
# started it. $1 is "parse" or "build". Its argv[0] is "adj-linger-$1", which a test looks for
# in the host's /proc; it reports the interfaces it sees on stderr (the step's log).
exec -a "adj-linger-$1" bash -c '
    echo "ADJ-LINGER $0: interfaces $(ls /sys/class/net 2>/dev/null | tr "\n" " ")" >&2
    while :; do
        date +%s.%N >> "/builddir/adj-linger-$0.beat" 2>/dev/null
        sleep 0.1
    done' "$1"
