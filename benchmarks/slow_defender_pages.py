"""Page latency while Defender is slow: one person's page loads while another's two Get alerts wait on a Defender
that takes 5 s to answer each call, against the same loads with Defender idle, in one run.

gunicorn (gunicorn.conf.py: 2 gthread workers) and a Celery worker on the embedded broker (benchmarks/
production_site.py). The reader loads the integrations list N times with Defender idle; then the simulator delays
every API call 5 s, the asker presses Get alerts on two actors, and the reader loads the same page N times while both
run (checked: still running when the loads end). Target: median and p95 at most 1.2x idle.
Run: .venv/bin/python benchmarks/slow_defender_pages.py [loads]
"""

import statistics
import sys
import time

from production_site import csrf_token, log_in, production_site

LOADS = int(sys.argv[1]) if len(sys.argv) > 1 else 50
DELAY_SECONDS = 5
TARGET = 1.2
PAGE = "/settings/integrations/"


def timed_loads(session, url, count):
    times = []
    for _ in range(count):
        start = time.perf_counter()
        answer = session.get(url + PAGE, timeout=60)
        times.append(time.perf_counter() - start)
        answer.raise_for_status()
    return times


def p95(times):
    return statistics.quantiles(times, n=20)[-1]


def press_get_alerts(asker, url, integration, actors):
    """Two Get alerts, as the asker's browser posts them; each answer comes back at once (a task is queued)."""
    answers = []
    for actor in actors:
        address = f"{url}/actors/{actor.pk}/"
        token = csrf_token(asker, address)
        start = time.perf_counter()
        answer = asker.post(
            f"{url}/actors/{actor.pk}/alerts/",
            {"csrfmiddlewaretoken": token, "integrations": [integration.pk], "window": "30d"},
            headers={"Referer": address},
            timeout=60,
        )
        answers.append(time.perf_counter() - start)
        answer.raise_for_status()
    return answers


def main():
    with production_site() as (url, simulator, integration):
        from defender.models import Actor, Job

        reader, asker = log_in(url, "reader"), log_in(url, "asker")
        actors = list(Actor.objects.order_by("pk")[:2])
        timed_loads(reader, url, 10)  # warm both gunicorn workers and their database connections

        idle = timed_loads(reader, url, LOADS)

        simulator.faults.set(delay=DELAY_SECONDS)
        post_times = press_get_alerts(asker, url, integration, actors)
        while Job.objects.filter(kind=Job.Kind.ALERTS, state=Job.State.RUNNING).count() < 2:
            time.sleep(0.05)
        busy = timed_loads(reader, url, LOADS)
        still_running = Job.objects.filter(kind=Job.Kind.ALERTS, state=Job.State.RUNNING).count()
        simulator.faults.set(delay=0)

    print(f"Page {PAGE}, {LOADS} loads each, gunicorn 2 gthread workers, a Celery worker on the embedded broker")
    print(f"Get alerts answered the asker in {max(post_times) * 1000:.0f} ms at most (Defender {DELAY_SECONDS} s/call)")
    print(f"Get alerts still running when the loads ended: {still_running} of 2")
    print(f"{'':<34}{'median':>10}{'p95':>10}")
    for label, times in (("Defender idle", idle), ("Defender 5 s a call, 2 Get alerts", busy)):
        print(f"{label:<34}{statistics.median(times) * 1000:>8.1f}ms{p95(times) * 1000:>8.1f}ms")
    median_ratio = statistics.median(busy) / statistics.median(idle)
    p95_ratio = p95(busy) / p95(idle)
    print(f"{'ratio (target <= 1.2x)':<34}{median_ratio:>9.2f}x{p95_ratio:>9.2f}x")
    if still_running < 2:
        print("The Get alerts ended before the loads did: raise DELAY_SECONDS for this machine.")


if __name__ == "__main__":
    main()
