"""The prediction server's request and response bodies, and the checks a request
passes before it is batched.

A request is parsed and checked in the HTTP process, before it is queued for
an inference worker: a bad body never reaches a batch, so it cannot fail the
requests batched with it. The checks are cheap and bounded whatever the body
holds: the number of inputs is checked before any input is validated, JSON's
``NaN``/``Infinity`` and strings that are not valid Unicode (lone surrogates)
are refused, and an error message names the field but never echoes the input.
"""

# No `from __future__ import annotations`: LitServe and FastAPI read these
# models' annotations at run time.
import json
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

MAX_ERRORS = 3  # validation errors named in one answer
MAX_MESSAGE = 1000  # characters of an error message
MAX_NAME = 200  # characters of a model or alias name
MAX_VERSION = 2**31 - 1  # registry versions are 32-bit integers


class RequestError(Exception):
    """A request that is refused before it is queued; ``status`` is the HTTP status."""

    def __init__(self, status: int, message: str):
        super().__init__(message[:MAX_MESSAGE])
        self.status = status


def _unicode(value: str) -> str:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("not valid Unicode (a lone surrogate); send UTF-8 text") from None
    return value


Text = Annotated[str, AfterValidator(_unicode)]
Name = Annotated[str, Field(min_length=1, max_length=MAX_NAME), AfterValidator(_unicode)]


class PredictRequest(BaseModel):
    """``POST /predict`` body."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    inputs: list[Text] = Field(min_length=1, description="texts, or base64-encoded images")
    model: Name | None = Field(None, description="registered model name (default: the "
                                                 "server's default model)")
    version: int | None = Field(None, ge=1, le=MAX_VERSION, description="a model version")
    alias: Name | None = Field(None, description="a model alias, e.g. champion")
    top_k: int = Field(5, ge=1, le=100)


class Scored(BaseModel):
    label: str
    score: float


class Prediction(BaseModel):
    label: str = Field(description="the most likely label")
    score: float = Field(description="its probability")
    top_k: list[Scored] = Field(description="the top_k labels, most likely first")
    labels: list[str] | None = Field(None, description="multi-label models: every label "
                                                       "over the threshold")


class PredictResponse(BaseModel):
    """``POST /predict`` answer: which model version answered, and its predictions."""

    model_config = ConfigDict(protected_namespaces=())

    model: str
    version: str
    predictions: list[Prediction] = Field(description="one per input, in order")
    request_id: str = Field(description="for POST /feedback and the prediction log")


def _no_constant(name: str):
    raise RequestError(422, f"the body is not valid JSON: {name} is not a JSON number")


def parse_json(body: bytes):
    """The JSON value of a request body (strict JSON: no NaN or Infinity).

    Raises:
        RequestError: 422 naming what is wrong with the body.
    """
    try:
        return json.loads(body, parse_constant=_no_constant)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise RequestError(422, f"the body is not valid JSON ({_short(err)}); send a JSON "
                                "object with Content-Type: application/json") from None
    except RecursionError:
        raise RequestError(422, "the body is not valid JSON: nested too deeply") from None


def check_predict(body: bytes, served: set[str], default_model: str, max_inputs: int,
                  max_input_chars: int) -> PredictRequest:
    """The checked ``POST /predict`` request, or :class:`RequestError`.

    404 for a model that is not served here, 413 for too many or too long
    inputs (counted before they are validated), 422 for anything else.
    """
    data = parse_json(body)
    if not isinstance(data, dict):
        raise RequestError(422, "the body must be a JSON object with an `inputs` list")
    inputs = data.get("inputs")
    if isinstance(inputs, list) and len(inputs) > max_inputs:
        raise RequestError(413, f"{len(inputs)} inputs: at most {max_inputs} per request "
                                "(max_inputs)")
    try:
        request = PredictRequest.model_validate(data)
    except ValidationError as err:
        raise RequestError(422, describe(err)) from None
    for i, text in enumerate(request.inputs):
        if len(text) > max_input_chars:
            raise RequestError(413, f"inputs.{i}: {len(text)} characters, at most "
                                    f"{max_input_chars} (max_input_chars)")
    name = request.model or default_model
    if name not in served:
        raise RequestError(404, f"model {name!r} is not served here (served: {sorted(served)})")
    return request


def describe(error) -> str:
    """A short message naming the fields that failed, never their values.

    Args:
        error: pydantic's ValidationError, or FastAPI's RequestValidationError.
    """
    errors, parts = error.errors(), []
    for item in errors[:MAX_ERRORS]:
        where = ".".join(_field(part) for part in item["loc"] if part != "body") or "body"
        parts.append(f"{where}: {item['msg']}")
    more = len(errors) - MAX_ERRORS
    message = "; ".join(parts) + (f" (and {more} more errors)" if more > 0 else "")
    return message[:MAX_MESSAGE]


def _field(part) -> str:
    """A location part; a key the client made up (an unknown field) only if it is short
    and plain."""
    if isinstance(part, int) or (part.isidentifier() and part.isascii() and len(part) <= 64):
        return str(part)
    return "(a field name)"


def _short(err: Exception) -> str:
    return str(err)[:200]


def answer_validation_errors(app) -> None:
    """Make ``app``'s 422s name the fields that failed, never their values (FastAPI's
    default echoes them: a megabyte, or a string JSON cannot encode, gives a 500)."""
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse

    async def answer(request, error) -> JSONResponse:
        return JSONResponse({"detail": describe(error)}, status_code=422)

    app.add_exception_handler(RequestValidationError, answer)
