"""Chat: one session (history, system prompt, streaming) over an in-process model (local) or an endpoint
(session); `camp chat` (repl) and the Streamlit web demo's launcher (webdemo)."""

from camp.conversation.session import ChatSession, EndpointBackend, chat

__all__ = ["ChatSession", "EndpointBackend", "chat"]
