#!/usr/bin/env python3
"""CPU time and context switches of a running process, summed by thread name,
over a window: `scripts/thread_cpu.py <pid> <seconds>` (in the middle of a
`signin_bench` run; divide by the sign-ins of the window). Prints one line per
thread name: CPU milliseconds and context switches (voluntary and not)."""
import collections
import os
import sys
import time


def snapshot(pid):
    totals = collections.Counter()
    tick_ms = 1000 / os.sysconf("SC_CLK_TCK")
    for tid in os.listdir(f"/proc/{pid}/task"):
        base = f"/proc/{pid}/task/{tid}"
        try:
            name = open(f"{base}/comm").read().strip()
            fields = open(f"{base}/stat").read().rsplit(")", 1)[1].split()
            status = open(f"{base}/status").read().splitlines()
        except OSError:
            continue  # the thread ended meanwhile
        totals[(name, "cpu_ms")] += (int(fields[11]) + int(fields[12])) * tick_ms
        totals[(name, "switches")] += sum(
            int(line.split()[1]) for line in status if "ctxt_switches" in line
        )
    return totals


def main():
    pid, seconds = int(sys.argv[1]), float(sys.argv[2])
    if not 0 < seconds <= 600:
        sys.exit("seconds: between 0 and 600")
    before = snapshot(pid)
    time.sleep(seconds)
    after = snapshot(pid)
    names = sorted({name for name, _ in after})
    for name in names:
        cpu = after[(name, "cpu_ms")] - before[(name, "cpu_ms")]
        switches = after[(name, "switches")] - before[(name, "switches")]
        print(f"{name:20} {cpu:10.0f} ms CPU {switches:10d} switches")


if __name__ == "__main__":
    main()
