"""Does a forgot-password answer tell whether the account exists? Times it for a real account and
an unknown one, alternating, against a 1-worker gunicorn with the test SMTP server receiving.

    .venv/bin/python -m bench.forgot_password_timing [--rounds 300]

Rate limits and the hourly mail cap are off, so every request does its full work; the pause
between requests lets the previous mail leave first. Prints the median and quartiles of each.
"""

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT)]

import requests  # noqa: E402

import mail_server  # noqa: E402  (tests/mail_server.py: aiosmtpd on loopback)
from servers import GunicornServer, csrf_from  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--pause", type=float, default=0.12, help="seconds between requests [%(default)s]")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="forgot-timing-"))
    (tmp / "seed.json").write_text((ROOT / "demo" / "seed.json").read_text())
    env = {**mail_server.environment(), "FLASK_RATELIMIT_ENABLED": "false",
           "FLASK_PASSWORD_RESET_MAILS_PER_HOUR": "1000000", "FLASK_LOG_REQUESTS": "false"}
    known = json.loads((tmp / "seed.json").read_text())["users"][0]["username"]
    with GunicornServer("sqlite:///" + str(tmp / "timing.db"), workers=1, env=env, log_dir=tmp) as server:
        assert server.cli(["seed", str(tmp / "seed.json")]).returncode == 0
        browser, url = requests.Session(), server.url + "/account/forgot-password"
        times = {known: [], "no-such-account": []}
        for i in range(args.rounds):
            for who in ((known, "no-such-account") if i % 2 else ("no-such-account", known)):
                token = csrf_from(browser.get(url, timeout=30).text)
                time.sleep(args.pause)
                started = time.perf_counter()
                answer = browser.post(url, data={"csrf_token": token, "username": who}, timeout=30)
                elapsed = (time.perf_counter() - started) * 1000
                assert answer.status_code == 200, answer.status_code
                if i >= 10:  # warm-up
                    times[who].append(elapsed)
    for who, values in times.items():
        values.sort()
        n = len(values)
        print(f"{who:16} n={n} median {statistics.median(values):.2f} ms, "
              f"p25 {values[n // 4]:.2f} ms, p75 {values[3 * n // 4]:.2f} ms")


if __name__ == "__main__":
    main()
