"""A readable table of the validated pools (what `python -m schema show` prints)."""

from __future__ import annotations

from schema.models import AwsPool, Pool, RunnersFile


def pool_row(pool: Pool) -> dict[str, str]:
    if isinstance(pool, AwsPool):
        where, machine = pool.region or "(aws:region)", ",".join(pool.effective_instance_types)
    else:
        where = "/".join(x for x in (pool.project or "(gcp:project)", pool.region or "(gcp:region)"))
        machine = pool.effective_machine_type
    size = pool.size
    return {
        "pool": pool.name,
        "cloud": pool.provider,
        "where": where,
        "machine": machine,
        "arch": pool.arch,
        # Demand pools run from the floor up to max; fixed pools run the floor.
        "size": f"{size.min}..{size.max} idle {pool.idle_timeout}" if pool.on_demand else f"{size.min} fixed",
        "mode": ("ephemeral" if pool.ephemeral else "persistent") + ("+spot" if pool.spot else ""),
        "labels": ",".join(pool.all_labels),
        "group": pool.group_name,
    }


def pool_table(runners: RunnersFile) -> str:
    rows = [pool_row(pool) for pool in runners.pools]
    headers = list(rows[0])
    widths = {h: max(len(h), *(len(r[h]) for r in rows)) for h in headers}
    line = "  ".join(h.upper().ljust(widths[h]) for h in headers)
    body = ["  ".join(r[h].ljust(widths[h]) for h in headers).rstrip() for r in rows]
    github = runners.github
    return f"GitHub {github.scope} {github.target} ({github.web_url})\n\n" + "\n".join([line.rstrip(), *body])
