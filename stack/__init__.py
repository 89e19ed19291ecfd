"""Wiring of the Pulumi program: stack config, pools, GitHub runner groups, outputs."""
