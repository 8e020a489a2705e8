"""The OpenAPI document follows the configuration (model-free; the fuzzing is in
test_openapi_fuzz.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from service.app import create_app
from tests.conftest import unit_settings


def schema(tmp_path: Path, **overrides: Any) -> dict[str, Any]:
    settings = unit_settings(index_root=tmp_path, api_keys=["k"], **overrides)
    doc: dict[str, Any] = create_app(settings, warm_up=False).openapi()
    return doc


def test_reads_declare_a_key_only_when_the_configuration_asks_for_one(tmp_path: Path) -> None:
    open_reads = schema(tmp_path)
    ask = open_reads["paths"]["/ask"]["post"]
    assert "security" not in ask and "401" not in ask["responses"]
    delete = open_reads["paths"]["/documents/{doc_id}"]["delete"]
    assert delete["security"] == [{"WriteKey": []}] and "401" in delete["responses"]
    keyed = schema(tmp_path, read_requires_key=True)["paths"]["/ask"]["post"]
    assert keyed["security"] == [{"ReadKey": []}] and "401" in keyed["responses"]


def test_errors_are_declared_with_the_body_the_service_sends(tmp_path: Path) -> None:
    doc = schema(tmp_path)
    assert "HTTPValidationError" not in doc["components"]["schemas"]
    ref = {"$ref": "#/components/schemas/ErrorBody"}
    post = doc["paths"]["/documents"]["post"]["responses"]
    for code in ("400", "401", "409", "413", "415", "422", "429"):
        assert post[code]["content"]["application/json"]["schema"] == ref, code
    ask = doc["paths"]["/ask"]["post"]["responses"]
    assert {"400", "409", "413", "422", "503", "504"} <= set(ask)


def test_limits_in_the_schema_follow_the_settings(tmp_path: Path) -> None:
    doc = schema(
        tmp_path, max_question_chars=77, max_top_k=9, max_filter_keys=3, max_chat_messages=5
    )
    comps = doc["components"]["schemas"]
    question = comps["AskRequest"]["properties"]["question"]
    assert question["maxLength"] == 77 and question["pattern"] == r"\S"
    assert comps["AskRequest"]["properties"]["top_k"]["anyOf"][0]["maximum"] == 9
    assert comps["Filters"]["anyOf"][0]["maxProperties"] == 3
    assert comps["ChatRequest"]["properties"]["messages"]["maxItems"] == 5
    meta = comps["DocumentIn"]["properties"]["metadata"]["anyOf"][0]
    depth, value = 1, meta["additionalProperties"]
    while any(k.get("type") == "object" for k in value["anyOf"]):
        value = next(k for k in value["anyOf"] if k.get("type") == "object")["additionalProperties"]
        depth += 1
    assert depth == unit_settings().max_metadata_depth
