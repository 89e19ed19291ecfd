"""gh-runners: GitHub Actions runner pools from runners.yaml, one `pulumi up`."""

from stack.config import read_stack_config
from stack.program import build_pools, build_scaling, export_pools, export_receivers, load_runners

config = read_stack_config()  # the GitHub credential (secret) and where runners.yaml is
runners = load_runners(config.runners_file)  # validated, or FILE:LINE:COL errors
pools = build_pools(runners, config)  # one RunnerPool per pool, through the provider registry
receivers = build_scaling(pools, config)  # a webhook receiver per cloud with demand pools, and its webhook
export_pools(pools)  # labels, runs-on, group names, secret locations -- never the secret
export_receivers(receivers)  # webhook URLs and where the webhook secret lives -- never the secret
