"""Agents: Lagent's ReAct loop over an endpoint (react), tools (tools), the sandbox for model-written code
(sandbox), and the ReAct traces an agent fine-tune trains on (traces)."""

from camp.agents.react import Agent, AgentReply, Step, agent, format_step, print_steps
from camp.agents.tools import (
           calculator,
           call,
           course_search,
           default_tools,
           format_number,
           python,
           safe_eval,
           tool,
)

__all__ = ["Agent", "AgentReply", "Step", "agent", "format_step", "print_steps", "calculator", "call",
           "course_search", "default_tools", "format_number", "python", "safe_eval", "tool"]
