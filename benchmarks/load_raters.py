"""Load test of the rater flow on the production stack: the paper's design, abandoning,
reloading, double submits and resumes, short slot timeouts; then checks from the database.

Starts everything it needs and removes it afterwards: a PostgreSQL database of its own
(``creativity_load``), a redis-server on a free port (Celery broker and the entry rate
limit's cache), gunicorn (sync workers, DEBUG off) on a free port. For each concurrency
level it seeds a fresh study of ``--deployments`` x ``--raters`` slots (the paper: 24 x 30 =
720), slot timeout and hold of one minute, and runs that many bot threads. Each bot walks
new raters until every slot of the study is complete; a rater is, at random (seeded):

* plain (walks through, reloads a rating page now and then),
* a double submitter (posts every rating page twice),
* a resumer (drops its cookies half-way, re-enters from the same Prolific link, continues),
* an abandoner (leaves after consent or after a few pages and never comes back: its slot
  is reassigned once silent past the timeout).

It then checks from the database: no rating the server acknowledged is missing (lost), no
(rater, stimulus, dimension) twice (duplicated), no participant holding two slots, every
slot complete, every stimulus rated by exactly its target number of complete raters, and
no 5xx answer. Latency percentiles of the rating page GET and POST are printed next to the
trivial ``/healthz`` view measured in the same run and next to the rater page's heartbeat
(the lightest request that reads the rater from the database: session, participant, one
UPDATE; each bot sends one per rating page), plus concurrency 1 (sequential raters)
for the "POST at most 3x the trivial view's p50" target, and the queries per request with
the time spent in them, next to one database round trip (in-process with Django's test
client on the same database): how much of a request is the database's.

    nice -n 10 .venv/bin/python benchmarks/load_raters.py                       # 24 x 30, c = 1, 50, 150
    .venv/bin/python benchmarks/load_raters.py --deployments 2 --raters 6 --concurrency 1 5   # a smoke run

Needs PostgreSQL as postgres@127.0.0.1:5432 (BENCH_PG_URL overrides) and redis-server.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import NoReturn

REPO = Path(__file__).resolve().parent.parent
DB_NAME = "creativity_load"
STIMULI_PER_RATER = 10
ITEMS = 25
DIMENSIONS = ("originality", "surprise", "creativity")
TIMEOUT_S = 120.0
HIDDEN = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)"')
CSRF = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')
KINDS = (("plain", 0.55), ("double", 0.15), ("resume", 0.15), ("abandon", 0.15))


def _pg_server_url() -> str:
    return os.environ.get("BENCH_PG_URL", "postgres://postgres@127.0.0.1:5432").rstrip("/")


def _admin(sql: str) -> None:
    import psycopg

    with psycopg.connect(f"{_pg_server_url()}/postgres", autocommit=True) as conn:
        conn.execute(sql)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def seed(
    *, slug: str, deployments: int, items: int, raters_per_deployment: int, stimuli_per_rater: int, **study_fields
) -> None:
    """A study of ``deployments`` x (base, activation) x ``items``, slots built (in a child process)."""
    import django

    django.setup()
    from studyapp.rating.slots import slots_build
    from studyapp.studies import models as m

    study = m.Study.objects.create(
        slug=slug,
        title="Benchmark study",
        is_open=True,
        raters_per_deployment=raters_per_deployment,
        stimuli_per_rater=stimuli_per_rater,
        prolific_completion_code="BENCH",
        **study_fields,
    )
    for position, key in enumerate(DIMENSIONS):
        m.RatingDimension.objects.create(study=study, key=key, question=f"How {key}?", position=position)
    task = m.TaskFamily.objects.create(study=study, key="aut", template="What is an unusual use for a {item}?")
    task_items = [m.Item.objects.create(task=task, key=f"i{i}", text=f"object {i}") for i in range(items)]
    for d in range(deployments):
        model = m.LanguageModel.objects.create(study=study, key=f"model-{d}", source="embedded")
        deployment = m.Deployment.objects.create(study=study, slug=f"dep-{d}", model=model, task=task)
        for method in ("base", "activation"):
            condition = m.Condition.objects.create(study=study, model=model, key=f"{method}-{d}", method=method)
            deployment.conditions.add(condition)
            job = m.GenerationJob.objects.create(deployment=deployment, condition=condition, status="succeeded")
            m.Stimulus.objects.bulk_create(
                [
                    m.Stimulus(
                        job=job,
                        deployment=deployment,
                        condition=condition,
                        item=item,
                        sample_index=0,
                        prompt=f"What is an unusual use for a {item.text}?",
                        text=f"A response about {item.text}, about two sentences long. " * 3,
                        seed=0,
                        model_source="embedded",
                        model_sha256="0" * 64,
                    )
                    for item in task_items
                ]
            )
    print(json.dumps({slug: len(slots) for slug, slots in slots_build(study=study).items()}))


def start_gunicorn(env: dict[str, str], workers: int) -> tuple[subprocess.Popen, str]:
    """gunicorn (sync workers) on a free loopback port, once /healthz answers."""
    import requests

    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    gunicorn = subprocess.Popen(
        [str(Path(sys.executable).parent / "gunicorn"), "studyapp.wsgi", "--bind", f"127.0.0.1:{port}",
         "--workers", str(workers), "--log-level", "warning", "--backlog", "2048"],
        cwd=REPO, env=env,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while True:
        try:
            if requests.get(f"{base}/healthz", timeout=2).status_code == 200:
                return gunicorn, base
        except requests.RequestException:  # still booting
            pass
        if time.monotonic() > deadline or gunicorn.poll() is not None:
            gunicorn.kill()
            sys.exit("gunicorn did not come up")
        time.sleep(0.3)


def percentile(values: list[float], q: int) -> float:
    ordered = sorted(values)
    return statistics.quantiles(ordered, n=100, method="inclusive")[q - 1] if len(ordered) > 1 else ordered[0]


def _env(redis_port: int) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": f"{_pg_server_url()}/{DB_NAME}",
        "CELERY_BROKER_URL": f"redis://127.0.0.1:{redis_port}/0",
        "CACHE_URL": f"redis://127.0.0.1:{redis_port}/1",
        # Every bot comes from 127.0.0.1: the per-IP entry limit would stop the run, not test it.
        "ENTRY_RATE_LIMIT_PER_HOUR": "0",
        "DEBUG": "0",
        "DJANGO_SETTINGS_MODULE": "studyapp.settings",
        "LOG_LEVEL": "WARNING",
    }


class Stats:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.samples: dict[str, list[float]] = {
            "rating page GET": [], "rating POST": [], "heartbeat POST": [], "/healthz GET": [],
        }  # fmt: skip
        self.statuses: Counter[int] = Counter()
        self.kinds: Counter[str] = Counter()
        self.acknowledged: list[tuple[str, str, str]] = []  # (pid, session, stimulus token) answered 303
        self.errors: list[str] = []

    def failures(self) -> dict[str, int]:
        """What went wrong as the bots saw it, at any level: 5xx answers and bot errors."""
        return {
            "5xx answers": sum(n for status, n in self.statuses.items() if status >= 500),
            "bot errors": len(self.errors),
        }

    def record(self, name: str | None, seconds: float, status: int) -> None:
        with self.lock:
            self.statuses[status] += 1
            if name is not None:
                self.samples[name].append(seconds)


class LoadRater:
    """One rater (one Prolific PID and session) walking the flow with a behaviour."""

    def __init__(self, base: str, slug: str, pid: str, kind: str, rng: random.Random, stats: Stats):
        import requests

        self.requests = requests
        self.session = requests.Session()
        self.base, self.slug, self.pid, self.kind, self.rng, self.stats = base, slug, pid, kind, rng, stats
        self.session_id = f"s-{pid}"

    def _get(self, path: str, name: str | None = None):
        started = time.perf_counter()
        response = self.session.get(self.base + path, timeout=TIMEOUT_S, allow_redirects=False)
        self.stats.record(name, time.perf_counter() - started, response.status_code)
        return response

    def _post(self, path: str, data: dict[str, str], name: str | None = None, headers: dict[str, str] | None = None):
        started = time.perf_counter()
        response = self.session.post(
            self.base + path,
            data=data,
            timeout=TIMEOUT_S,
            allow_redirects=False,
            headers={"Referer": self.base, **(headers or {})},
        )
        self.stats.record(name, time.perf_counter() - started, response.status_code)
        return response

    def heartbeat(self, html: str) -> None:
        """What an open rating page sends (``templates/rating/_heartbeat.html``): a POST with the
        page's CSRF token in a header. Sent once per page here; a real page sends one a minute."""
        csrf = CSRF.search(html)
        if csrf is None:
            raise RuntimeError(f"{self.kind} {self.pid}: a rating page without a CSRF token")
        answer = self._post(f"/r/{self.slug}/-/alive/", {}, "heartbeat POST", {"X-CSRFToken": csrf.group(1)})
        if answer.status_code != 204:
            self._fail("heartbeat", answer)

    def _form(self, html: str) -> dict[str, str]:
        data = dict(HIDDEN.findall(html))
        for name in data:
            if name.startswith("score-"):
                data[name] = str(self.rng.randint(0, 100))
            elif name == "response":
                data[name] = "100"
        return data

    def enter(self) -> str | None:
        """Open the Prolific link; the path of the rater's page, or None when the study is full."""
        query = f"PROLIFIC_PID={self.pid}&STUDY_ID=load&SESSION_ID={self.session_id}"
        response = self._get(f"/r/{self.slug}/?{query}")
        if response.status_code == 302:
            return response.headers["Location"]
        if "This study is full" in response.text:
            return None
        self._fail("entry", response)

    def _fail(self, where: str, response) -> NoReturn:
        raise RuntimeError(f"{self.kind} {self.pid}: {where} -> {response.status_code}")

    def run(self) -> bool:
        """Walk; False when the study had no room for this rater."""
        location = self.enter()
        if location is None:
            return False
        abandon_after = self.rng.choice([0, 1, 3, 6]) if self.kind == "abandon" else None
        resume_after = self.rng.randint(1, STIMULI_PER_RATER - 1) if self.kind == "resume" else None
        rated = 0
        for _ in range(4 * STIMULI_PER_RATER + 20):
            if location.endswith("/-/done/") or location.endswith("/-/ended/"):
                self._get(location)
                return True
            if abandon_after is not None and rated >= abandon_after and location.endswith("/-/rate/"):
                return True  # gone for good: the slot is reassigned once silent past the timeout
            if resume_after is not None and rated == resume_after:
                resume_after = None
                self.session = self.requests.Session()  # a fresh browser, the same Prolific link
                location = self.enter()
                if location is None:
                    raise RuntimeError(f"resume of {self.pid} found the study full")
                continue
            rating = location.endswith("/-/rate/")
            page = self._get(location, "rating page GET" if rating else None)
            if page.status_code != 200:
                self._fail(f"GET {location}", page)
            if rating and self.rng.random() < 0.1:  # a reload
                page = self._get(location, "rating page GET")
            if rating:
                self.heartbeat(page.text)
            data = self._form(page.text) | {"choice": "agree"}
            answer = self._post(location, data, "rating POST" if rating else None)
            if answer.status_code != 303:
                self._fail(f"POST {location}", answer)
            if rating and self.kind == "double":
                again = self._post(location, data, "rating POST")
                if again.status_code != 303:
                    self._fail(f"double POST {location}", again)
            if rating:
                rated += 1
                # A 303 to the "ended" page means the slot was lost meanwhile: nothing was acknowledged.
                if "stimulus" in data and not answer.headers["Location"].endswith("/-/ended/"):
                    with self.stats.lock:
                        self.stats.acknowledged.append((self.pid, self.session_id, data["stimulus"]))
                started = time.perf_counter()
                health = self.session.get(f"{self.base}/healthz", timeout=TIMEOUT_S)
                self.stats.record("/healthz GET", time.perf_counter() - started, health.status_code)
            location = answer.headers["Location"].removeprefix(self.base)
        raise RuntimeError(f"{self.pid}: no end after many pages")


def _complete_slots(slug: str) -> int:
    return _scalar(
        "SELECT count(*) FROM rating_slot s JOIN studies_deployment d ON d.id = s.deployment_id "
        "JOIN studies_study t ON t.id = d.study_id WHERE t.slug = %s AND s.status = 'complete'",
        [slug],
    )


def _count(row: tuple | None) -> int:
    """The single number a ``SELECT count(*)`` row holds."""
    if row is None:
        raise RuntimeError("a count query returned no row")
    return int(row[0])


def _scalar(sql: str, params: list) -> int:
    import psycopg

    with psycopg.connect(f"{_pg_server_url()}/{DB_NAME}") as conn:
        return _count(conn.execute(sql, params).fetchone())


def run_level(base: str, slug: str, concurrency: int, n_slots: int, seed: int, max_raters: int | None) -> Stats:
    """``concurrency`` bots walk new raters until all ``n_slots`` are complete (or ``max_raters`` walked)."""
    stats = Stats()
    counter = iter(range(10**9))
    done = threading.Event()
    counter_lock = threading.Lock()

    def bot(number: int) -> None:
        rng = random.Random(seed * 1000 + number)
        while not done.is_set():
            with counter_lock:
                n = next(counter)
            if max_raters is not None and n >= max_raters:
                return
            kind = rng.choices([k for k, _ in KINDS], weights=[w for _, w in KINDS])[0]
            if max_raters is not None:
                kind = "plain"  # the latency level: every rater walks straight through
            try:
                rater = LoadRater(base, slug, f"load{seed}x{n:07d}", kind, rng, stats)
                if rater.run():
                    with stats.lock:
                        stats.kinds[kind] += 1
                else:
                    time.sleep(2.0)  # full for now: abandoned slots free up after the timeout
            except Exception as error:  # recorded and reported; a failing bot must not hang the run
                with stats.lock:
                    stats.errors.append(repr(error))

    def watch() -> None:
        while not done.is_set():
            if max_raters is None and _complete_slots(slug) >= n_slots:
                done.set()
            time.sleep(2.0)

    threads = [threading.Thread(target=bot, args=(b,)) for b in range(concurrency)]
    watcher = threading.Thread(target=watch, daemon=True)
    started = time.perf_counter()
    watcher.start()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    done.set()
    stats.samples["_wall"] = [time.perf_counter() - started]
    return stats


def db_checks(slug: str, stats: Stats, target: int) -> dict[str, int]:
    """What the database holds after a level, against what the server acknowledged."""
    import psycopg

    study = "JOIN rating_participant p ON p.id = r.participant_id JOIN studies_study t ON t.id = p.study_id"
    with psycopg.connect(f"{_pg_server_url()}/{DB_NAME}") as conn:

        def one(sql: str, params: list | None = None) -> int:
            return _count(conn.execute(sql, params or [slug]).fetchone())

        stored = {
            (pid, session, token)
            for pid, session, token in conn.execute(
                f"SELECT DISTINCT p.prolific_pid, p.prolific_session_id, s.token FROM rating_rating r {study} "
                "JOIN studies_stimulus s ON s.id = r.stimulus_id WHERE t.slug = %s",
                [slug],
            ).fetchall()
        }
        checks = {
            "acknowledged ratings pages": len(set(stats.acknowledged)),
            "lost (acknowledged, not stored)": len(set(stats.acknowledged) - stored),
            "duplicated (rater, stimulus, dimension)": one(
                "SELECT count(*) FROM (SELECT 1 FROM rating_rating r "
                f"{study} WHERE t.slug = %s GROUP BY r.participant_id, r.stimulus_id, r.dimension_id "
                "HAVING count(*) > 1) x"
            ),
            "ratings of incomplete pages": one(
                "SELECT count(*) FROM (SELECT 1 FROM rating_rating r "
                f"{study} WHERE t.slug = %s GROUP BY r.participant_id, r.stimulus_id "
                f"HAVING count(*) <> {len(DIMENSIONS)}) x"
            ),
            "participants holding two slots": one(
                "SELECT count(*) FROM (SELECT s.participant_id FROM rating_slot s JOIN rating_participant p "
                "ON p.id = s.participant_id JOIN studies_study t ON t.id = p.study_id WHERE t.slug = %s "
                "GROUP BY s.participant_id HAVING count(*) > 1) x"
            ),
            "slots complete": _complete_slots(slug),
            "slots reassigned at least once": one(
                "SELECT count(*) FROM rating_slot s JOIN studies_deployment d ON d.id = s.deployment_id "
                "JOIN studies_study t ON t.id = d.study_id WHERE t.slug = %s AND s.times_released > 0"
            ),
            "stimuli off their target count": one(
                "SELECT count(*) FROM (SELECT st.id, count(DISTINCT r.participant_id) AS n FROM studies_stimulus st "
                "JOIN studies_deployment d ON d.id = st.deployment_id JOIN studies_study t ON t.id = d.study_id "
                "LEFT JOIN rating_rating r ON r.stimulus_id = st.id AND r.slot_id IN "
                "(SELECT s.id FROM rating_slot s WHERE s.status = 'complete' AND s.participant_id = r.participant_id) "
                "WHERE t.slug = %s GROUP BY st.id) x WHERE n <> " + str(target)
            ),
        }
    return checks


def queries_per_request(env: dict[str, str], slug: str) -> dict[str, dict[str, float]]:
    """``_count_queries`` in a child process (Django set up against the run's database)."""
    result = subprocess.run(
        [sys.executable, __file__, "_queries", slug], cwd=REPO, env=env, check=True, capture_output=True, text=True
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


class _QueryRecorder:
    """Counts the queries of one request and times each inside Django's cursor (``execute_wrapper``):
    the round trip, PostgreSQL's planning and execution, and psycopg adapting parameters; not
    Django building the SQL or the model instances."""

    def __init__(self) -> None:
        self.count, self.seconds = 0, 0.0

    def __call__(self, execute, sql, params, many, context):
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            self.count += 1
            self.seconds += time.perf_counter() - started


def _round_trip_ms(connection, n: int = 100) -> float:
    """Median of ``SELECT 1`` on the raw psycopg connection: what one query costs at the least."""
    connection.ensure_connection()
    seconds = []
    with connection.connection.cursor() as cursor:
        for _ in range(n):
            started = time.perf_counter()
            cursor.execute("SELECT 1")
            cursor.fetchone()
            seconds.append(time.perf_counter() - started)
    return statistics.median(seconds) * 1000


def _count_queries(slug: str) -> None:
    """In a child process: one rater walked with Django's test client; per kind of request the
    most queries and the median time spent in them, and one database round trip."""
    import django

    django.setup()
    from django.db import connection
    from django.test import Client

    recorded: dict[str, list[_QueryRecorder]] = {
        "entry GET": [], "rating page GET": [], "rating POST": [], "heartbeat POST": [],
    }  # fmt: skip

    def request(name: str | None, method, *args):
        recorder = _QueryRecorder()
        with connection.execute_wrapper(recorder):
            response = method(*args)
        if name is not None:
            recorded[name].append(recorder)
        return response

    client = Client()
    entry = {"PROLIFIC_PID": "queries0", "STUDY_ID": "q", "SESSION_ID": "q"}
    location = request("entry GET", client.get, f"/r/{slug}/", entry)["Location"]
    rng = random.Random(0)
    for _ in range(40):
        if location.endswith("/-/done/"):
            break
        rating = location.endswith("/-/rate/")
        page = request("rating page GET" if rating else None, client.get, location)
        if rating:
            request("heartbeat POST", client.post, f"/r/{slug}/-/alive/")
        data = dict(HIDDEN.findall(page.content.decode())) | {"choice": "agree"}
        data = {k: (str(rng.randint(0, 100)) if k.startswith("score-") else v) for k, v in data.items()}
        location = request("rating POST" if rating else None, client.post, location, data)["Location"]
    kinds = {name: runs for name, runs in recorded.items() if runs}
    print(
        json.dumps(
            {
                "most": {name: max(r.count for r in runs) for name, runs in kinds.items()},
                "median_ms_in_queries": {
                    name: round(statistics.median(r.seconds for r in runs) * 1000, 2) for name, runs in kinds.items()
                },
                "round_trip_ms": round(_round_trip_ms(connection), 3),
            }
        )
    )


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 50, 150])
    parser.add_argument("--deployments", type=int, default=24)
    parser.add_argument("--raters", type=int, default=30, help="raters (slots) per deployment")
    parser.add_argument("--sequential-raters", type=int, default=8, help="raters walked at concurrency 1")
    parser.add_argument("--workers", type=int, default=2 * (os.cpu_count() or 1) + 1, help="gunicorn sync workers")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "load_raters.json")
    args = parser.parse_args()
    if (args.raters * STIMULI_PER_RATER // 2) % ITEMS:
        parser.error(f"--raters x {STIMULI_PER_RATER // 2} must be a multiple of {ITEMS} for a balanced design")
    return args


def _start_redis() -> tuple[subprocess.Popen, int, str]:
    """A redis-server of the run's own on a free port: (process, port, its data directory)."""
    redis_binary = shutil.which("redis-server")
    if redis_binary is None:
        sys.exit("redis-server is not installed")
    port = _free_port()
    data_dir = tempfile.mkdtemp(prefix="load-redis-")
    redis = subprocess.Popen(
        [redis_binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", data_dir, "--save", "",
         "--appendonly", "yes"],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    return redis, port, data_dir


def _seed_levels(args: argparse.Namespace, env: dict[str, str]) -> None:
    """One fresh study per concurrency level, seeded in a child process with Django set up."""
    for concurrency in args.concurrency:
        design = {
            "slug": f"load-c{concurrency}",
            "deployments": args.deployments,
            "items": ITEMS,
            "raters_per_deployment": args.raters,
            "stimuli_per_rater": STIMULI_PER_RATER,
            "slot_timeout_minutes": 1,
            "slot_hold_minutes": 1,
        }
        subprocess.run(
            [sys.executable, __file__, "_seed", json.dumps(design)],
            cwd=REPO, env=env, check=True, stdout=subprocess.DEVNULL,
        )  # fmt: skip


def _run_levels(args: argparse.Namespace, base: str, target: int) -> dict:
    """Each level against the running server; concurrency 1 walks raters in turn for the latency target."""
    levels = {}
    n_slots = args.deployments * args.raters
    for concurrency in args.concurrency:
        slug = f"load-c{concurrency}"
        sequential = concurrency == 1
        print(f"concurrency {concurrency}: {'sequential raters' if sequential else f'{n_slots} slots'} ...")
        walk_only = args.sequential_raters if sequential else None
        stats = run_level(base, slug, concurrency, n_slots, args.seed + concurrency, walk_only)
        checks = ({} if sequential else db_checks(slug, stats, target)) | stats.failures()
        levels[concurrency] = {"stats": stats, "checks": checks}
        if stats.errors:
            print(f"  {len(stats.errors)} bot errors, first: {stats.errors[0]}")
    return levels


def main() -> None:
    args = _parse_args()
    target = args.raters * (STIMULI_PER_RATER // 2) // ITEMS
    redis, redis_port, redis_dir = _start_redis()
    env = _env(redis_port)
    _admin(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")
    _admin(f"CREATE DATABASE {DB_NAME}")
    gunicorn = None
    try:
        subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=REPO, env=env, check=True)
        _seed_levels(args, env)
        queries = queries_per_request(env, f"load-c{args.concurrency[0]}")
        gunicorn, base = start_gunicorn(env, args.workers)
        report(_run_levels(args, base, target), queries, args)
    finally:
        if gunicorn is not None:
            gunicorn.terminate()
            gunicorn.wait(timeout=30)
        redis.terminate()
        redis.wait(timeout=30)
        shutil.rmtree(redis_dir, ignore_errors=True)
        _admin(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")


def report(levels: dict, queries: dict[str, dict[str, float]], args) -> None:
    rows = []
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    print(f"{when}; {platform.node()}: {os.cpu_count()} CPUs; gunicorn sync workers: {args.workers}")
    print(f"design: {args.deployments} deployments x {args.raters} raters, slot timeout and hold 1 min")
    print("| concurrency | request | n | p50 ms | p95 ms | p99 ms | p50 / healthz p50 |")
    print("| ---: | --- | ---: | ---: | ---: | ---: | ---: |")
    for concurrency, level in levels.items():
        samples = level["stats"].samples
        health = percentile(samples["/healthz GET"], 50)
        for name in ("rating page GET", "rating POST", "heartbeat POST", "/healthz GET"):
            values = samples[name]
            p = {q: percentile(values, q) * 1000 for q in (50, 95, 99)}
            row = {"concurrency": concurrency, "request": name, "n": len(values)}
            row |= {f"p{q}_ms": round(v, 1) for q, v in p.items()}
            row["p50_ratio"] = round(p[50] / 1000 / health, 2)
            rows.append(row)
            print(
                f"| {concurrency} | {name} | {len(values)} | {p[50]:.1f} | {p[95]:.1f} | {p[99]:.1f} | "
                f"{row['p50_ratio']:.2f} |"
            )
    checks = {}
    for concurrency, level in levels.items():
        stats = level["stats"]
        print(
            f"concurrency {concurrency}: {stats.samples['_wall'][0]:.0f} s, raters by kind {dict(stats.kinds)}, "
            f"answers by status {dict(sorted(stats.statuses.items()))}"
        )
        checks[concurrency] = level["checks"]
        for name, value in level["checks"].items():
            print(f"  {name}: {value}")
    print(f"queries per request (most over one rater's walk, in-process): {queries['most']}")
    print(f"  median time in those queries, ms: {queries['median_ms_in_queries']}")
    print(f"  one database round trip (SELECT 1), ms: {queries['round_trip_ms']}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "when": when,
                "cpus": os.cpu_count(),
                "workers": args.workers,
                "design": [args.deployments, args.raters],
                "rows": rows,
                "checks": checks,
                "queries": queries,
            },
            indent=2,
        )
    )
    print(f"written to {args.out}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["_seed"]:
        sys.path.insert(0, str(REPO))
        seed(**json.loads(sys.argv[2]))
    elif sys.argv[1:2] == ["_queries"]:
        sys.path.insert(0, str(REPO))
        _count_queries(sys.argv[2])
    else:
        main()
