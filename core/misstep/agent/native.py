"""Native tool calling: the tools' schemas, and the check of each call the model makes against them."""

from __future__ import annotations

from collections.abc import Sequence

from jsonschema import SchemaError
from jsonschema.validators import validator_for

from misstep.components import ParsedCall, Tool
from misstep.datamodel import ToolSchema
from misstep.errors import ComponentError


class ToolBox:
    """The agent's tools for native calls: their schemas (for the model) and a validator of each one's arguments."""

    def __init__(self, tools: Sequence[Tool]) -> None:
        self.tools = {tool.name: tool for tool in tools}
        self.schemas: list[ToolSchema] = [tool.schema() for tool in tools]
        self._validators = {}
        for schema in self.schemas:
            function = schema["function"]
            parameters = function["parameters"]
            try:
                cls = validator_for(parameters)
                cls.check_schema(parameters)
            except SchemaError as error:
                raise ComponentError(f"tool {function['name']!r} publishes an invalid parameters schema: "
                                     f"{error.message}") from None
            self._validators[function["name"]] = cls(parameters)

    def problem(self, call: ParsedCall) -> str | None:
        """Why ``call`` cannot run (an unknown tool, arguments that fail the schema), or None."""
        if call.name not in self.tools:
            return f"unknown tool {call.name!r}; available: {', '.join(sorted(self.tools)) or '(none)'}"
        error = next(iter(sorted(self._validators[call.name].iter_errors(call.arguments), key=str)), None)
        if error is not None:
            where = "/".join(str(part) for part in error.absolute_path)
            return (f"the arguments of {call.name!r} do not fit its schema: {(where + ': ') if where else ''}"
                    f"{error.message}")
        return None
