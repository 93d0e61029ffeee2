"""The serving engine: scheduler, paged KV cache, model runner, sampler and the async front."""
