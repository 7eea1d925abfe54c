"""The HTTP gateway: OpenAI ``/v1`` and Azure ``/openai/deployments/...`` routes over the pipeline.

``server.app`` is the composition root; ``server.errors`` is the only place errors become HTTP.
"""
