"""The runtime's HTTP server: KServe v2 / Triton and OpenAI APIs, /metrics, health and drain.

`runner.serve` is the entry point; `app.create_app` assembles the ASGI app from the routers
(`kserve_v2`, `triton_generate`, `openai`), the gate middleware and the lifecycle state.
"""
