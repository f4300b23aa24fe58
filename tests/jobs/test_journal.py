"""The job journal's ownership: a runner takes over released rows and those of processes that have ended, never
those of a live runner — even in the same process — and two runners starting at once never take the same row."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

from fhir_server.jobs.journal import JobJournal


def _journal(path: Path) -> JobJournal:
    journal = JobJournal(path)
    journal.open()
    return journal


def test_rows_round_trip_and_end(tmp_path: Path) -> None:
    journal = _journal(tmp_path / "jobs.db")
    first = journal.add("a.task", ("id-1", 2, None, True), 100.0, "k1")
    second = journal.add("b.task", (), 50.0, None)
    journal.again(first, 200.0, 3)
    journal.done(second)
    journal.close()  # released
    later = _journal(tmp_path / "jobs.db")
    (job,) = later.take_over()
    assert (job.id, job.name, job.args, job.due, job.key, job.attempt) == (first, "a.task", ("id-1", 2, None, True),
                                                                           200.0, "k1", 3)
    assert later.take_over() == [job]  # its own now: taking over again changes nothing


def test_a_live_runner_keeps_its_rows(tmp_path: Path) -> None:
    live = _journal(tmp_path / "jobs.db")
    live.add("a.task", ("x",), 1.0, None)
    other = _journal(tmp_path / "jobs.db")  # same process, another runner
    assert other.take_over() == []
    live.close()
    assert [j.args for j in other.take_over()] == [("x",)]


def test_the_rows_of_a_process_that_died_are_taken_over(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    script = ("import sys; from pathlib import Path; from fhir_server.jobs.journal import JobJournal; "
              "j = JobJournal(Path(sys.argv[1])); j.open(); j.add('a.task', ('from-the-dead',), 5.0, 'k'); "
              "import os; os._exit(0)")  # killed, in effect: no close, nothing released
    subprocess.run([sys.executable, "-c", script, str(path)], check=True)
    survivor = _journal(path)
    assert [j.args for j in survivor.take_over()] == [("from-the-dead",)]


def test_two_runners_starting_together_take_each_row_once(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    old = _journal(path)
    for i in range(50):
        old.add("a.task", (f"j{i}",), float(i), None)
    old.close()
    starters = [_journal(path) for _ in range(4)]
    taken: list[list[str]] = [[] for _ in starters]
    barrier = threading.Barrier(len(starters))

    def start(n: int) -> None:
        barrier.wait()
        taken[n] = [str(j.args[0]) for j in starters[n].take_over()]

    threads = [threading.Thread(target=start, args=(n,)) for n in range(len(starters))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    everything = [job for part in taken for job in part]
    assert sorted(everything) == sorted(f"j{i}" for i in range(50))  # all taken, none twice
