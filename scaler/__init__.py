"""The webhook receiver: grows runner pools as `workflow_job` events queue jobs.

config.py is the contract with the stack (the JSON document the deployed
function reads); decision.py decides in a cloud-neutral way (signature,
parsing, the pool-choice rule); reconcile.py repairs lost deliveries and keeps
floors, with github.py for the REST calls and floor.py for schedules; aws.py
and gcp.py act on each cloud's scaling primitives and hold the entry points;
server.py serves the same handler on loopback (`python -m scaler serve`).
Standard library only, plus the boto3 the Lambda runtime ships (aws.py).
"""
