"""bench/cpu_steal.py: the noise line the benches print beside their figures."""

from __future__ import annotations

from bench.cpu_steal import cpu_times, shares

# user nice system idle iowait irq softirq steal guest guest_nice
BEFORE = "cpu  1000 0 200 5000 100 0 50 40 300 0\ncpu0 500 0 100 2500 50 0 25 20 150 0\n"
AFTER = "cpu  1600 0 300 5200 100 0 100 290 900 0\ncpu0 800 0 150 2600 50 0 50 145 450 0\n"


def test_steal_and_idle_are_shares_of_the_time_between_two_readings() -> None:
    # 750 busy (guest time left out: user already counts it), 200 idle, 250 stolen.
    assert shares(cpu_times(BEFORE), cpu_times(AFTER)) == (
        "steal 21 %, idle 17 % of the machine's CPU time")


def test_a_kernel_without_the_steal_field_counts_none() -> None:
    old = cpu_times("cpu  10 0 5 100 1 0 0\n")
    assert (old.busy, old.idle, old.steal) == (15, 101, 0)


def test_no_time_elapsed_says_so() -> None:
    same = cpu_times(BEFORE)
    assert shares(same, same) == "CPU time: none elapsed"


def test_this_machine_can_be_read() -> None:
    now = cpu_times()
    assert now.total > 0 and now.steal >= 0
