"""Talking to deployments: the wire protocol (``azure``), credentials (``auth``) and the attempt
loop (``client``), the one layer that retries."""
