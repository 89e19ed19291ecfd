"""What runs on the VM: the cloud-init user data and the agent it installs.

`cloud_config.render_user_data` is the only entry point the Pulumi program
uses; `agent/` is the VM agent (standard library only), bundled into the user
data as a zipapp.
"""
