"""berth's inference runtime: the LLM serving engine that runs in every GPU pod."""
