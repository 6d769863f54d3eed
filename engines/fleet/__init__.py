"""Many machines as one: the status document each llm-tui server publishes, and the fleet poller that reads it
(and the Prometheus metrics of engines we do not run: vLLM, SGLang, TGI, llama-server)."""
