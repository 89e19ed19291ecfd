"""The gh-runners VM agent: Python 3.10+ standard library only.

It runs as root under systemd (gh-runners-agent.service). At boot it reads the
GitHub credential through the instance identity, registers the runner, cuts
the runner user off from the metadata endpoint, and runs the runner as an
unprivileged user; on stop it drains and deregisters. See main.py for the
order of steps and shared/design.md for why.
"""
