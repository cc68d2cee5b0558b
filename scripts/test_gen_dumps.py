#!/usr/bin/env python3
"""Unit tests for scripts/gen-dumps: run with `python3 scripts/test_gen_dumps.py`."""

import datetime as dt
import hashlib
import importlib.machinery
import importlib.util
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
GEN = os.path.join(HERE, "gen-dumps")
_loader = importlib.machinery.SourceFileLoader("gen_dumps", GEN)
_spec = importlib.util.spec_from_loader("gen_dumps", _loader)
gen_dumps = importlib.util.module_from_spec(_spec)
_loader.exec_module(gen_dumps)

NOW = "2026-11-26T14:37:12Z"


def run_gen(*args):
    return subprocess.run([sys.executable, GEN, "--now", NOW, *args], check=True, capture_output=True, text=True)


def load_sql(text):
    """Loads SQL into a fresh in-memory database and returns the connection."""
    db = sqlite3.connect(":memory:")
    db.executescript(text)
    return db


def invoice_numbers(db):
    return [row[0] for row in db.execute("SELECT no FROM invoices ORDER BY no")]


def read(path, mode="r"):
    with open(path, mode) as handle:
        return handle.read()


class DumpSet:
    """A dump set written into a temporary directory."""

    def __init__(self, *defects):
        self.tmp = tempfile.TemporaryDirectory(prefix="test-gen-dumps-")
        self.dir = self.tmp.name
        args = ["--out", self.dir]
        for defect in defects:
            args += ["--defect", defect]
        run_gen(*args)
        self.defects = json.loads(read(os.path.join(self.dir, "defects.json")))
        self.names = sorted(n for n in os.listdir(self.dir) if n.endswith(".sql"))

    def manifest(self, name):
        return json.loads(read(os.path.join(self.dir, name + ".manifest.json")))

    def db(self, name):
        return load_sql(read(os.path.join(self.dir, name)))

    def sha_check(self):
        """Runs `sha256sum -c` the way an operator would; returns the names that failed."""
        result = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=self.dir, capture_output=True, text=True)
        return [line.split(":")[0] for line in result.stdout.splitlines() if line.endswith("FAILED")]

    def close(self):
        self.tmp.cleanup()


class CleanSet(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.set = DumpSet()

    @classmethod
    def tearDownClass(cls):
        cls.set.close()

    def test_there_are_24_hourly_dumps_ending_at_the_last_full_hour(self):
        now = gen_dumps.parse_time(NOW)
        times = [dt.datetime.strptime(n, "erp-%Y%m%d-%H%M.sql").replace(tzinfo=dt.timezone.utc)
                 for n in self.set.names]
        self.assertEqual(len(times), 24)
        self.assertEqual(times[-1], gen_dumps.floor_hour(now))
        for older, newer in zip(times, times[1:]):
            self.assertEqual(newer - older, dt.timedelta(hours=1))
        self.assertTrue(all(t <= now for t in times))

    def test_every_manifest_describes_its_dump(self):
        for name in self.set.names:
            manifest = self.set.manifest(name)
            data = read(os.path.join(self.set.dir, name), "rb")
            db = load_sql(data.decode())
            numbers = invoice_numbers(db)
            taken_at = dt.datetime.strptime(name, "erp-%Y%m%d-%H%M.sql").strftime("%Y-%m-%dT%H:%M:00Z")
            last_at = db.execute("SELECT max(created_at) FROM invoices").fetchone()[0]
            self.assertEqual(manifest["file"], name)
            self.assertEqual(manifest["sha256"], hashlib.sha256(data).hexdigest())
            self.assertEqual(manifest["bytes"], len(data))
            self.assertEqual(manifest["taken_at"], taken_at)
            self.assertEqual(manifest["database"], "erp")
            self.assertEqual(manifest["tool"], "sqlite3 .dump")
            self.assertEqual(manifest["rows"]["customers"], db.execute("SELECT count(*) FROM customers").fetchone()[0])
            self.assertEqual(manifest["rows"]["invoices"], len(numbers))
            self.assertEqual(manifest["max_invoice_no"], numbers[-1])
            self.assertEqual(manifest["last_invoice_at"], last_at)
            self.assertLessEqual(last_at, taken_at)
            self.assertEqual(int(os.stat(os.path.join(self.set.dir, name)).st_mtime),
                             int(gen_dumps.parse_time(taken_at).timestamp()))

    def test_sha256sums_verifies_every_dump(self):
        self.assertEqual(self.set.sha_check(), [])
        listed = [line.split()[1] for line in read(os.path.join(self.set.dir, "SHA256SUMS")).splitlines()]
        self.assertEqual(listed, self.set.names)

    def test_invoices_grow_from_dump_to_dump_without_gaps(self):
        previous = []
        for name in self.set.names:
            numbers = invoice_numbers(self.set.db(name))
            self.assertEqual(numbers, list(range(numbers[0], numbers[-1] + 1)), f"gap in {name}")
            self.assertGreater(len(numbers), len(previous))
            self.assertEqual(numbers[: len(previous)], previous, f"{name} lost older invoices")
            growth = len(numbers) - len(previous)
            if previous:
                self.assertTrue(15 <= growth <= 25, f"{name} grew by {growth}")
            previous = numbers

    def test_the_history_has_40_to_60_customers_and_3_days_of_invoices(self):
        customers, invoices = gen_dumps.build_history(20261126, gen_dumps.parse_time(NOW))
        self.assertTrue(40 <= len(customers) <= 60)
        span = invoices[-1][3] - invoices[0][3]
        self.assertGreater(span, dt.timedelta(hours=70))
        self.assertEqual([i[0] for i in invoices], list(range(10001, 10001 + len(invoices))))
        self.assertEqual([i[3] for i in invoices], sorted(i[3] for i in invoices))
        self.assertTrue(all(1 <= i[1] <= len(customers) for i in invoices))

    def test_no_defects_are_recorded_when_none_were_asked_for(self):
        self.assertEqual(self.set.defects["defects"], [])
        self.assertEqual(self.set.defects["dumps"], self.set.names)

    def test_the_same_seed_and_now_give_byte_identical_dumps(self):
        again = DumpSet()
        try:
            for name in self.set.names + ["SHA256SUMS"]:
                self.assertEqual(read(os.path.join(self.set.dir, name), "rb"),
                                 read(os.path.join(again.dir, name), "rb"), name)
        finally:
            again.close()

    def test_a_different_seed_gives_a_different_history(self):
        now = gen_dumps.parse_time(NOW)
        self.assertNotEqual(gen_dumps.build_history(1, now), gen_dumps.build_history(2, now))

    def test_history_sql_up_to_a_dump_time_matches_that_dump(self):
        for name in (self.set.names[0], self.set.names[-1]):
            taken_at = self.set.manifest(name)["taken_at"]
            sql = run_gen("--sql-until", taken_at).stdout
            self.assertEqual(self.dump_of(load_sql(sql)), read(os.path.join(self.set.dir, name)))

    def test_history_sql_in_two_steps_equals_the_whole_history(self):
        cut, until = "2026-11-25T12:37:12Z", NOW
        db = load_sql(run_gen("--sql-until", cut).stdout)
        db.executescript(run_gen("--sql-until", until, "--sql-after", cut).stdout)
        whole = load_sql(run_gen("--sql-until", until).stdout)
        self.assertEqual(self.dump_of(db), self.dump_of(whole))
        self.assertEqual(whole.execute("SELECT max(created_at) <= ? FROM invoices", (until,)).fetchone()[0], 1)

    @staticmethod
    def dump_of(db):
        """The sqlite3 CLI's .dump of an in-memory database, via a temporary file."""
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "x.db")
            disk = sqlite3.connect(path)
            db.backup(disk)
            disk.close()
            return subprocess.run(["sqlite3", path, ".dump"], check=True, capture_output=True, text=True).stdout


class Defects(unittest.TestCase):
    def test_missing_invoice_leaves_a_gap_that_only_a_gap_check_sees(self):
        dumps = DumpSet("missing-invoice")
        clean = DumpSet()
        try:
            (defect,) = dumps.defects["defects"]
            self.assertEqual(defect["kind"], "missing-invoice")
            self.assertEqual(defect["file"], "erp-20261126-1200.sql")
            missing = defect["details"]["invoice_no"]
            numbers = invoice_numbers(dumps.db(defect["file"]))
            expected = [n for n in range(numbers[0], numbers[-1] + 1) if n not in numbers]
            self.assertEqual(expected, [missing])
            self.assertTrue(numbers[0] < missing < numbers[-1])
            # The manifest and checksums agree with the file as written.
            self.assertEqual(dumps.sha_check(), [])
            manifest = dumps.manifest(defect["file"])
            self.assertEqual(manifest["rows"]["invoices"], len(numbers))
            self.assertEqual(manifest["max_invoice_no"], numbers[-1])
            # Every other dump is the same as in a clean set.
            for name in dumps.names:
                if name != defect["file"]:
                    self.assertEqual(read(os.path.join(dumps.dir, name)), read(os.path.join(clean.dir, name)))
        finally:
            dumps.close()
            clean.close()

    def test_corrupt_dump_fails_its_checksum_and_nothing_else_does(self):
        dumps = DumpSet("corrupt-dump")
        try:
            (defect,) = dumps.defects["defects"]
            self.assertEqual(defect["kind"], "corrupt-dump")
            self.assertEqual(dumps.sha_check(), [defect["file"]])
            path = os.path.join(dumps.dir, defect["file"])
            data = read(path, "rb")
            manifest = dumps.manifest(defect["file"])
            self.assertNotEqual(hashlib.sha256(data).hexdigest(), manifest["sha256"])
            self.assertEqual(manifest["sha256"], defect["details"]["sha256_manifest"])
            self.assertEqual(hashlib.sha256(data).hexdigest(), defect["details"]["sha256_actual"])
            offset = defect["details"]["offset"]
            self.assertEqual(data[offset:offset + 1].decode(), defect["details"]["replacement"])
            self.assertEqual(len(data), manifest["bytes"])
        finally:
            dumps.close()

    def test_stale_set_ends_30_hours_before_now(self):
        dumps = DumpSet("stale")
        try:
            (defect,) = dumps.defects["defects"]
            self.assertEqual(defect["kind"], "stale")
            self.assertEqual(len(dumps.names), 24)
            newest = gen_dumps.parse_time(dumps.manifest(dumps.names[-1])["taken_at"])
            age = gen_dumps.parse_time(NOW) - newest
            self.assertTrue(dt.timedelta(hours=30) <= age < dt.timedelta(hours=31), age)
            self.assertEqual(defect["file"], dumps.names[-1])
            self.assertEqual(dumps.sha_check(), [])
        finally:
            dumps.close()

    def test_defects_combine_on_the_newest_dump_at_least_two_hours_old(self):
        dumps = DumpSet("stale", "missing-invoice", "corrupt-dump")
        try:
            kinds = {d["kind"]: d for d in dumps.defects["defects"]}
            self.assertEqual(set(kinds), {"stale", "missing-invoice", "corrupt-dump"})
            self.assertEqual(kinds["missing-invoice"]["file"], dumps.names[-1])
            self.assertEqual(dumps.sha_check(), [dumps.names[-1]])
        finally:
            dumps.close()

    def test_corrupt_since_removes_one_block_from_that_dump_on(self):
        dumps = DumpSet("corrupt-since=5h")
        clean = DumpSet()
        try:
            (defect,) = dumps.defects["defects"]
            self.assertEqual(defect["kind"], "corrupt-since")
            # NOW is 14:37: the dump of 5 hours ago is 09:00, the newest good one 08:00.
            self.assertEqual(defect["details"]["first_bad"], "erp-20261126-0900.sql")
            self.assertEqual(defect["details"]["newest_good_before"], "erp-20261126-0800.sql")
            low, high = defect["details"]["missing"]
            self.assertEqual(high - low + 1, gen_dumps.BLOCK_SIZE)
            bad = [n for n in dumps.names if n >= "erp-20261126-0900.sql"]
            self.assertEqual(defect["details"]["bad_files"], bad)
            self.assertEqual(len(bad), 6)
            for name in dumps.names:
                numbers = invoice_numbers(dumps.db(name))
                gaps = [n for n in range(numbers[0], numbers[-1] + 1) if n not in numbers]
                if name in bad:
                    self.assertEqual(gaps, list(range(low, high + 1)), name)
                    self.assertEqual(dumps.manifest(name)["rows"]["invoices"], len(numbers))
                else:
                    self.assertEqual(gaps, [], name)
                    self.assertEqual(read(os.path.join(dumps.dir, name)), read(os.path.join(clean.dir, name)))
            self.assertEqual(dumps.sha_check(), [])
        finally:
            dumps.close()
            clean.close()

    def test_corrupt_between_heals_after_its_last_bad_dump(self):
        dumps = DumpSet("corrupt-between=5h..3h")
        try:
            (defect,) = dumps.defects["defects"]
            self.assertEqual(defect["details"]["bad_files"],
                             ["erp-20261126-0900.sql", "erp-20261126-1000.sql", "erp-20261126-1100.sql"])
            low, _ = defect["details"]["missing"]
            for name in dumps.names:
                self.assertEqual(low in invoice_numbers(dumps.db(name)), name not in defect["details"]["bad_files"])
        finally:
            dumps.close()

    def test_a_malformed_block_defect_is_refused(self):
        with tempfile.TemporaryDirectory() as tmp:
            for bad in ["corrupt-since=5", "corrupt-since=30h", "corrupt-between=3h..5h", "corrupt-since"]:
                result = subprocess.run([sys.executable, GEN, "--out", tmp, "--defect", bad],
                                        capture_output=True, text=True)
                self.assertEqual(result.returncode, 2, bad)
                self.assertIn("invalid choice", result.stderr)

    def test_an_unknown_defect_is_refused(self):
        with tempfile.TemporaryDirectory() as tmp:
            result = subprocess.run([sys.executable, GEN, "--out", tmp, "--defect", "bitrot"],
                                    capture_output=True, text=True)
            self.assertEqual(result.returncode, 2)
            self.assertIn("invalid choice", result.stderr)


if __name__ == "__main__":
    unittest.main()
