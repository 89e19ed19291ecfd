"""The webhook receiver: grows runner pools as `workflow_job` events queue jobs.

config.py is the contract with the stack; decision.py decides in a
cloud-neutral way; aws.py and gcp.py act on each cloud's scaling primitives.
"""
