"""Tool calling for engines that do not take tools themselves: tools in the prompt, calls out of the text.

`prompt` puts the tools and past calls into a chat template's context (or, for a template that knows nothing of
tools, into a system message); `parse` finds calls in a reply in the formats models are trained on; `forced`
turns `tool_choice` "required" or a named function into a JSON schema the engine's grammar enforces; `catch`
holds a streamed reply back once it turns into a call; `assemble` joins streamed call pieces into calls.
"""
