"""4. VM agent: from agent start to the runner's run.sh exec against the loopback doubles.

bench/agent_probe.py runs under pytest so it starts the agent exactly as
tests/bootstrap does (its doubles, fixtures and `vm_factory`), with remote
services given a round-trip latency; this module runs it and writes the section.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

from bench.common import PYTHON, ROOT, Stat, child_env, load_average
from bench.machine import _git_state as git_commit
from bench.report import Section, table

PROBE = Path(__file__).resolve().parent / "agent_probe.py"
CASES = ("aws:pat", "aws:app", "gcp:pat", "gcp:app", "aws:pat:download", "gcp:pat:download")

# What a real cold start adds around the measured part (sources, not measurements of ours).
COLD_START = [
    ["EC2: RunInstances → pending → running",
     "≈ 1.5 s API + ≈ 5 s pending→running (c5.xlarge, 2021); ≈ 16.5 s pending→running in a later sweep of "
     "t3/m6i/m7i/c7i/r7i (\"instance type doesn't matter\")",
     "[daemonology.net 2021](http://www.daemonology.net/blog/2021-08-12-EC2-boot-time-benchmarking.html), "
     "[brevdev/ec2-coldboot-research, @fix_plan.md](https://gh.r-mj.com/brevdev/ec2-coldboot-research/blob/"
     "main/%40fix_plan.md)", "no"],
    ["EC2: kernel + userspace boot to sshd (Linux AMIs)",
     "≈ 17 s to TCP stack + ≈ 5.6 s to sshd; ≈ 26 s end to end on average; EBS encryption (which our "
     "launch template turns on) slows launches",
     "daemonology.net 2021; brevdev; [martysweet.co.uk 2023](https://www.martysweet.co.uk/ec2-launch-times/)",
     "no (a smaller image boots only marginally faster; stripping cloud-init made it slower in brevdev's test)"],
    ["GCE: request → provisioning → running → boot",
     "≈ 23–25 s time-to-SSH for ≤ 32 vCPU n1 VMs (2018); ≈ 41.5 s for a 2 vCPU Debian VM (2017)",
     "[Aboukhalil 2018](https://medium.com/@robaboukhalil/move-fast-and-break-the-cloud-b55b899e3683), "
     "[McAnlis 2017](https://medium.com/google-cloud/understanding-and-profiling-gce-cold-boot-time-32c209fe86ab)",
     "no"],
    ["cloud-init final stage, then our unit (After=cloud-final.service)",
     "packages (`docker: true` installs docker.io from apt) and the pool's `setup_script` run before the "
     "agent; the example's script runs apt-get update + install + `npm install -g`: typically tens of seconds",
     "[Google: three steps to Compute Engine startup-time bliss](https://cloud.google.com/blog/products/gcp/"
     "three-steps-to-compute-engine-startup-time-bliss-google-cloud-performance-atlas) (boot time includes "
     "startup scripts and custom code; McAnlis 2017 traced 380 s cold boots to them)",
     "yes: bake packages and tools into the image"],
    ["runner release lookup + tarball download + sha256 + extract",
     "one GitHub API call (none for a pin listed in bootstrap/runner_releases.json), then the tarball from "
     "GitHub's release CDN (size not verified offline: read the release asset's `size` field), beside the "
     "credential and registration calls",
     "[terraform-aws-github-runner runner-binaries-syncer](https://github-aws-runners.github.io/"
     "terraform-aws-github-runner/modules/internal/runner-binaries-syncer) caches the distribution in S3 "
     "\"to avoid the latency of downloading the distribution during the setup\"",
     "yes: an image with the pinned runner and root's marker (/var/lib/gh-runners/runner-version) skips it"],
    ["scale-out from zero without any boot", "AWS offers warm pools of pre-initialized, stopped instances",
     "[EC2 Auto Scaling warm pools](https://docs.aws.amazon.com/autoscaling/ec2/userguide/"
     "ec2-auto-scaling-warm-pools)", "n/a: not used by gh-runners (ephemeral VMs are replaced, not reused)"],
]


# The boot path before issue 11 (bench/results.md of 9433a4b, same doubles, no latency): every call was
# sequential; the remote ones were the secret store, [the App token,] the runner list of the ghost sweep,
# the runner-group lookup and the JIT call.
BEFORE = {"aws:pat": (8, 4), "aws:app": (9, 5), "gcp:pat": (6, 4), "gcp:app": (7, 5)}  # (all, remote)
TARGET = {"pat": 2, "app": 3}

# On paper, per cloud: a queued job to its runner listening, VM boot included (seconds, low-high).
COLD_BUDGET = [
    ["VM: API call to a running instance", "1.5–17", "included in 23–41.5 below",
     "daemonology.net 2021; brevdev/ec2-coldboot-research (see the sources table)"],
    ["VM: kernel and userspace to cloud-init's final stage", "17–26", "23–41.5 (request to SSH)",
     "daemonology.net 2021, martysweet.co.uk 2023; Aboukhalil 2018, McAnlis 2017"],
    ["cloud-init: the runner user, our files, the unit (no packages, no setup script)", "1–3", "1–3",
     "estimate: three small modules, no network"],
    ["agent: python3 start, link-local metadata, 2 (PAT) / 3 (App) regional round trips", "0.3–1", "0.3–1",
     "measured above: {agent}"],
    ["runner: run.sh to \"Listening for Jobs\" (.NET start, session)", "2–5", "2–5",
     "estimate; one more round trip to GitHub"],
    ["GitHub hands the queued job to the runner", "1–3", "1–3", "estimate"],
    ["**total, runner on the image**", "**~25–55**", "**~30–55**", ""],
    ["without a prebaked runner: download, verify, extract (beside the boot path)", "+5–15", "+5–15",
     "estimate; depends on the tarball's size (the release asset's `size`) and the disk"],
    ["terraform-aws-github-runner, published", "45–60 (optimized AMI); 1:26–3:56 (default AMI)", "n/a",
     "as quoted in issues 11 and 12; the page itself could not be fetched offline"],
]


def measure(reps: int, workdir: Path, cases: tuple[str, ...] = CASES, latency: float = 0.05) -> Section:
    section = Section("4. VM agent: start to runner exec")
    started = time.perf_counter()
    load = load_average()
    out = workdir / "agent.jsonl"
    env = {"BENCH_AGENT_OUT": str(out), "BENCH_AGENT_REPS": str(reps), "BENCH_AGENT_CASES": ",".join(cases),
           "BENCH_AGENT_LATENCY": str(latency)}
    command = [PYTHON, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "addopts=", "--rootdir", str(ROOT),
               str(PROBE)]
    seconds, proc = _run(command, env)
    if proc.returncode != 0 or not out.exists():
        section.add("**Not measured**: the agent probe failed (the VM agent or its test harness is not ready):",
                    "", "```", (proc.stdout + proc.stderr)[-3000:].strip(), "```", "")
        section.problems.append("The VM agent measurement failed; see section 4.")
        section.seconds = time.perf_counter() - started
        return section
    runs = [json.loads(line) for line in out.read_text().splitlines() if line.strip()]
    by_case: dict[str, list[dict[str, Any]]] = {}
    for run in runs:
        by_case.setdefault(run["case"], []).append(run)

    rows, heads = [], []
    for case in cases:
        got = by_case.get(case, [])
        if not got:
            continue
        wall = Stat.of([r["to_run_sh"] for r in got])
        chain = max(r["sequential"] for r in got)
        cloud, kind, *mode = case.split(":")
        name = f"{cloud.upper()}, {'PAT' if kind == 'pat' else 'GitHub App'}" + (
            ", runner downloaded" if mode else ", runner on the image")
        before = BEFORE.get(case)
        beside = ("yes" if all(r["download_beside"] for r in got) else "no") if mode else "—"
        rows.append([name, wall.show(digits=3), chain, TARGET[kind], max(r["remote"] for r in got),
                     max(r["connections"] for r in got),
                     max(len(r["requests"]) - r["remote"] - r["download_calls"] for r in got), beside,
                     f"{before[1]} of {before[0]}" if before else "n/a"])
        if mode and beside == "no":
            section.problems.append(f"{case}: the download did not run beside the credential and registration.")
        if chain > TARGET[kind]:
            section.problems.append(f"{case}: {chain} sequential remote round trips before run.sh "
                                    f"(target {TARGET[kind]}).")
        if not mode:
            heads.append(f"{cloud.upper()}/{kind} {chain} sequential remote round trips "
                         f"({wall.median * 1000:.0f} ms)")
    section.add(
        "The real agent (the bundle `render_user_data` ships, run by the interpreter behind the venv, `python3 -I`) "
        "against the loopback doubles of tests/bootstrap: IMDSv2 + moto (SSM via the SigV4-checking front) or "
        "the GCE metadata server + Secret Manager, and the GitHub double (validated against GitHub's OpenAPI). "
        f"Every remote service (GitHub, SSM, Secret Manager, Compute) answers after {latency * 1000:.0f} ms, "
        "standing for a regional round trip; IMDS and the GCE metadata server (link-local) at once. Calls made "
        "one after another then add up and calls made side by side overlap, so **sequential round trips** is the "
        "longest chain of remote calls each made after the previous one was answered. Organization target, "
        "ephemeral pool, its runner group managed by the stack (the id comes with the user data); the runner "
        "either on the image (pinned version, root's marker) or downloaded (a pin whose digest is known before "
        "boot: no release lookup). Wall time is from spawning the agent to `run.sh` being exec'd (its first "
        "line, or the listener's first record when the agent installed it). "
        f"{reps} repetition(s) per case; the probe took {seconds:.0f} s including the doubles' start. "
        f"Measured at commit {git_commit()}, load average {load} before (other jobs shared the machine; wall "
        "times move with it, round trips do not).",
        "",
    )
    section.add(*table(["case", "agent start → run.sh exec", "sequential remote round trips", "target",
                        "remote requests", "remote TCP connections", "link-local requests",
                        "download beside them", "before (remote of all, all sequential)"], rows))
    section.add("Round trips, requests and connections count the credential and registration calls; a download "
                "(a redirect, then the object store) runs in its own thread and is not on their path. The AWS "
                "secret read is one `curl --aws-sigv4` process, hence its own connection.", "")
    section.data["headline"] = "; ".join(heads) + f" before run.sh at {latency * 1000:.0f} ms per remote call."

    for case in cases:
        got = by_case.get(case, [])
        if not got:
            continue
        typical = sorted(got, key=lambda r: r["to_run_sh"])[len(got) // 2]
        steps = [[i + 1, f"{r['at'] * 1000:.0f}–{r['answered'] * 1000:.0f} ms", r["double"],
                  f"{r['method']} {r['path']}", r["operation"] or "", r["status"], r["connection"]]
                 for i, r in enumerate(typical["requests"])]
        steps.append(["", f"{typical['to_run_sh'] * 1000:.0f} ms", "", "run.sh exec'd", "", "", ""])
        section.add(f"Requests before run.sh, {case} (the median run):", "")
        section.add(*table(["#", "sent–answered", "double", "request", "operation", "status", "connection"], steps))

    section.add(
        "What changed: the ghost sweep runs after run.sh, on a share of boots, and lists only the pool's own runner "
        "group; the group id comes with the user data (repositories: the default group, 1); the release lookup "
        "(`latest`) or the download of a pin with a known digest runs in a second thread beside the credential and "
        "the registration; HTTP connections are kept alive, so the App's token exchange and the JIT call share one "
        "TLS handshake. On a real VM the link-local calls take well under a millisecond each and the agent's own CPU "
        "time (Python start, `curl --aws-sigv4`, the App JWT's `openssl`) is what the wall time adds beyond the "
        "round trips.",
        "",
        "**Cold start on paper**, a queued job to its runner listening (seconds):",
        "",
    )
    measured = ", ".join(h for h in heads) or "not measured"
    budget = [[cell.format(agent=measured) for cell in row] for row in COLD_BUDGET]
    section.add(*table(["phase", "AWS (EC2)", "GCP (GCE)", "source"], budget))
    section.add("Sources for the VM phases:", "")
    section.add(*table(["phase", "typical cost", "source", "removed by a prebaked image?"], COLD_START))
    section.add(
        "So a cold ephemeral runner is dominated by the cloud's VM boot (≈ 25–40 s) plus whatever cloud-init "
        "installs; the agent's share is a fraction of a second, two (PAT) or three (App) regional round trips. A "
        "prebaked image (the pinned runner + the pool's tools) removes the download and the package installs, not "
        "the VM boot.",
        "",
    )
    section.seconds = time.perf_counter() - started
    return section


def _run(command: list[str], env: dict[str, str]) -> tuple[float, subprocess.CompletedProcess[str]]:
    start = time.perf_counter()
    proc = subprocess.run(command, cwd=ROOT, env={**child_env(), **env}, capture_output=True, text=True,
                          timeout=600, check=False)
    return time.perf_counter() - start, proc
