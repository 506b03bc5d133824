"""Latency of the rater's rating page (GET) and rating POST under bots, next to /healthz.

Starts everything it needs and removes it afterwards: a PostgreSQL database of its own
(``creativity_bench``, created and dropped here), the app migrated and seeded with a
study, and gunicorn serving it on a loopback port. Bots (threads, one HTTP session each)
walk raters through consent, instructions and practice untimed, then time every rating
page GET, every rating POST and one ``/healthz`` GET per page, at concurrency 1, 10 and
50. The machine is shared and noisy, so the figure that matters is the ratio of each
rating request to the trivial view measured in the same run.

    .venv/bin/python benchmarks/bench_rater_pages.py
    .venv/bin/python benchmarks/bench_rater_pages.py --concurrency 1 10 50 --raters-per-bot 2

Needs PostgreSQL reachable as postgres@127.0.0.1:5432 (override with BENCH_PG_URL, a
URL of a server, without the database name).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DB_NAME = "creativity_bench"
STUDY_SLUG = "bench"
DIMENSIONS = ("originality", "surprise", "creativity")
DEPLOYMENTS = 4
ITEMS = 25
RATERS_PER_DEPLOYMENT = 100
STIMULI_PER_RATER = 10
TIMEOUT_S = 30.0


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


def _app_env() -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": f"{_pg_server_url()}/{DB_NAME}",
        "CELERY_BROKER_URL": "",
        "DEBUG": "0",
        "DJANGO_SETTINGS_MODULE": "studyapp.settings",
        "LOG_LEVEL": "WARNING",
    }


# --- Seeding (runs in a child process with Django set up) ----------------------------


def seed(
    *,
    slug: str = STUDY_SLUG,
    deployments: int = DEPLOYMENTS,
    items: int = ITEMS,
    raters_per_deployment: int = RATERS_PER_DEPLOYMENT,
    stimuli_per_rater: int = STIMULI_PER_RATER,
    **study_fields,
) -> None:
    """A study of ``deployments`` x (base, activation) x ``items``, slots built (also used by load_raters.py)."""
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


# --- Bots ------------------------------------------------------------------------------

HIDDEN = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)"')


class Bot:
    def __init__(self, base: str, pid: str, samples: dict[str, list[float]], lock: threading.Lock):
        import requests

        self.session = requests.Session()
        self.base = base
        self.pid = pid
        self.samples = samples
        self.lock = lock

    def _record(self, name: str, seconds: float) -> None:
        with self.lock:
            self.samples[name].append(seconds)

    def _form(self, html: str) -> dict[str, str]:
        data = dict(HIDDEN.findall(html))
        for name in data:
            if name.startswith("score-"):
                data[name] = str(hash((self.pid, name, len(html))) % 101)
        return data

    def _post(self, path: str, data: dict[str, str]):
        response = self.session.post(
            self.base + path, data=data, allow_redirects=False, timeout=TIMEOUT_S, headers={"Referer": self.base}
        )
        if response.status_code != 303:
            raise RuntimeError(f"POST {path} -> {response.status_code}")
        return response.headers["Location"]

    def run(self) -> None:
        response = self.session.get(
            f"{self.base}/r/{STUDY_SLUG}/",
            params={"PROLIFIC_PID": self.pid, "STUDY_ID": "bench", "SESSION_ID": f"s-{self.pid}"},
            timeout=TIMEOUT_S,
        )
        location = response.url.removeprefix(self.base)
        for _ in range(3):  # consent, instructions, practice: untimed
            html = self.session.get(self.base + location, timeout=TIMEOUT_S).text
            data = self._form(html) | {"choice": "agree"}
            location = self._post(location, data)
        pages = 0
        while location.endswith("/-/rate/") and pages < STIMULI_PER_RATER + 5:
            pages += 1
            started = time.perf_counter()
            page = self.session.get(self.base + location, timeout=TIMEOUT_S)
            self._record("rating page GET", time.perf_counter() - started)
            if page.status_code != 200:
                raise RuntimeError(f"GET rate -> {page.status_code}")
            started = time.perf_counter()
            location = self._post(location, self._form(page.text))
            self._record("rating POST", time.perf_counter() - started)
            started = time.perf_counter()
            health = self.session.get(f"{self.base}/healthz", timeout=TIMEOUT_S)
            self._record("/healthz GET", time.perf_counter() - started)
            if health.status_code != 200:
                raise RuntimeError("healthz failed")
            location = location.removeprefix(self.base)
        html = self.session.get(self.base + location, timeout=TIMEOUT_S).text
        self._post(location, self._form(html))


def run_level(base: str, concurrency: int, raters_per_bot: int, first_pid: int) -> dict[str, list[float]]:
    samples: dict[str, list[float]] = {"rating page GET": [], "rating POST": [], "/healthz GET": []}
    lock = threading.Lock()
    errors: list[str] = []

    def worker(w: int) -> None:
        try:
            for r in range(raters_per_bot):
                Bot(base, f"bench{first_pid + w * raters_per_bot + r:019d}", samples, lock).run()
        except Exception as error:  # reported after the run: a failed bot must not hang the others
            errors.append(repr(error))

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(concurrency)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=600)
    samples["_wall"] = [time.perf_counter() - started]
    if errors:
        raise RuntimeError(f"{len(errors)} bots failed, first: {errors[0]}")
    return samples


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return statistics.quantiles(ordered, n=100, method="inclusive")[q - 1] if len(ordered) > 1 else ordered[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 10, 50])
    parser.add_argument("--raters-per-bot", type=int, default=0, help="0: 20 raters at c=1, 2 per bot above")
    parser.add_argument("--workers", type=int, default=2 * (os.cpu_count() or 1) + 1, help="gunicorn workers")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "rater_pages.json")
    args = parser.parse_args()
    plan = {c: args.raters_per_bot or (20 if c == 1 else 2) for c in args.concurrency}
    needed = sum(c * n for c, n in plan.items())
    if needed > DEPLOYMENTS * RATERS_PER_DEPLOYMENT:
        sys.exit(f"{needed} raters needed, the seeded study has {DEPLOYMENTS * RATERS_PER_DEPLOYMENT} slots")

    env = _app_env()
    _admin(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")
    _admin(f"CREATE DATABASE {DB_NAME}")
    gunicorn = None
    try:
        subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=REPO, env=env, check=True)
        subprocess.run([sys.executable, __file__, "_seed"], cwd=REPO, env=env, check=True, stdout=subprocess.DEVNULL)
        gunicorn, base = start_gunicorn(env, args.workers)

        results = {}
        first_pid = 0
        for concurrency in args.concurrency:
            samples = run_level(base, concurrency, plan[concurrency], first_pid)
            first_pid += concurrency * plan[concurrency]
            results[concurrency] = samples
        report(results, args)
    finally:
        if gunicorn is not None:
            gunicorn.terminate()
            gunicorn.wait(timeout=30)
        _admin(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")


def start_gunicorn(env: dict[str, str], workers: int) -> tuple[subprocess.Popen, str]:
    """gunicorn (sync workers) on a free loopback port, once /healthz answers (also used by load_raters.py)."""
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


def report(results: dict[int, dict[str, list[float]]], args) -> None:
    rows = []
    print(f"gunicorn sync workers: {args.workers}; CPUs: {os.cpu_count()}; latencies in ms")
    print("| concurrency | request | n | p50 | p95 | p99 | p50 / healthz | p95 / healthz | p99 / healthz |")
    print("| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for concurrency, samples in results.items():
        base = {q: percentile(samples["/healthz GET"], q) for q in (50, 95, 99)}
        for name in ("rating page GET", "rating POST", "/healthz GET"):
            values = samples[name]
            p = {q: percentile(values, q) for q in (50, 95, 99)}
            row = {
                "concurrency": concurrency,
                "request": name,
                "n": len(values),
                **{f"p{q}_ms": round(p[q] * 1000, 2) for q in p},
                **{f"p{q}_ratio": round(p[q] / base[q], 2) for q in p},
            }
            rows.append(row)
            print(
                f"| {concurrency} | {name} | {len(values)} | {row['p50_ms']:.1f} | {row['p95_ms']:.1f} | "
                f"{row['p99_ms']:.1f} | {row['p50_ratio']:.2f} | {row['p95_ratio']:.2f} | {row['p99_ratio']:.2f} |"
            )
    for concurrency, samples in results.items():
        timed = sum(len(samples[name]) for name in ("rating page GET", "rating POST", "/healthz GET"))
        wall = samples["_wall"][0]
        print(f"concurrency {concurrency}: {timed} timed requests in {wall:.1f} s (untimed set-up pages included)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"workers": args.workers, "cpus": os.cpu_count(), "rows": rows}, indent=2))
    print(f"written to {args.out.relative_to(REPO)}")


if __name__ == "__main__":
    if sys.argv[1:] == ["_seed"]:
        sys.path.insert(0, str(REPO))
        seed()
    else:
        main()
