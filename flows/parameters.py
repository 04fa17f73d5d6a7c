"""The flows' side of the parameter declaration (`mnistnn.parameters`): each flow's signature,
and so its Prefect parameter schema and UI form, is generated from the declared models.

`prefect deploy` imports the entrypoint's module (prefect.flows.load_flow_from_entrypoint), so
the schema it stores is the generated one: typed fields, enum choices, bounds, and descriptions
(from a generated `Args:` section of the docstring).
The parameters stay flat (`hidden_nodes`, not `network.hidden_nodes`), so `-p preset=best
-p hidden_nodes=100` works from `prefect deployment run` and the form alike.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from mnistnn.core import locations
from mnistnn.errors import DataError
from mnistnn.parameters import Parameters, fields, help_text

F = TypeVar("F", bound=Callable[..., Any])


def flow_signature(model: type[Parameters], returns: Any) -> inspect.Signature:
    """Keyword-only parameters, one per declared field: its type with its bounds and checks
    (Prefect validates a run's parameters with them) and its plain default."""
    parameters = [
        inspect.Parameter(
            name,
            inspect.Parameter.KEYWORD_ONLY,
            annotation=Annotated[field.annotation, *field.metadata]
            if field.metadata
            else field.annotation,
            default=field.default,
        )
        for _, name, field in fields(model)
    ]
    return inspect.Signature(parameters, return_annotation=returns)


def args_section(model: type[Parameters]) -> str:
    """A Google-style `Args:` section: Prefect reads each parameter's description from it
    (a `Field` default would carry it too, but Prefect then passes the FieldInfo itself as the
    value of a parameter a run left out)."""
    lines = ["Args:"]
    lines += [f"    {name}: {help_text(name, field)}" for _, name, field in fields(model)]
    return "\n".join(lines)


def declared(model: type[Parameters]) -> Callable[[F], F]:
    """Give a `def f(**values)` flow function the declared parameters as its signature
    (apply below `@flow`, which reads the signature when it wraps the function).

    The flow itself validates with `parse` (so pass `validate_parameters=False` to `@flow`):
    one line naming the parameter, the same as the CLI's, instead of Prefect's report.
    """

    def apply(function: F) -> F:
        returns = inspect.signature(function, eval_str=True).return_annotation
        function.__signature__ = flow_signature(model, returns)  # type: ignore[attr-defined]
        function.__doc__ = f"{inspect.getdoc(function) or ''}\n\n{args_section(model)}"
        return function

    return apply


def check_inputs(*sources: str) -> None:
    """Each input (a path or an `s3://` URL) exists: one line naming the first that does not."""
    for source in sources:
        if not locations.exists(source):
            raise DataError(f"{source}: no such file or object")


__all__ = ["check_inputs", "declared", "flow_signature"]
