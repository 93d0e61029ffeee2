"""When a reconcile does not apply the children, and says why: a spec the schema missed, a GPU product
outside the allow-list, a name no Service can take (never retried); a missing Secret, a child name
another object holds, a child the API server refuses (retried). Each is in the Accepted condition and
an Event; without permission to read Secrets the Secret check is skipped."""

from __future__ import annotations

import copy

import kopf
import pytest
from reconcile_support import AUTOSCALED, InferenceDeploymentFactory, conditions, events, resource_status

from berth_operator.handlers.context import OperatorContext
from berth_operator.handlers.reconcile import reconcile
from berth_operator.kube import InMemoryKubeApi
from berth_operator.kube.kinds import DEPLOYMENT, INFERENCE_DEPLOYMENT, SECRET, SERVICE
from berth_operator.settings import OperatorSettings


async def test_spec_the_schema_missed_is_refused_with_a_condition_not_a_crash(
    context: OperatorContext, api: InMemoryKubeApi, inference_deployment: InferenceDeploymentFactory
) -> None:
    body = inference_deployment(
        {"model": {"name": "m", "source": "hf://org/m"}, "runtime": {"speculative": {"method": "ngram"}}}
    )
    with pytest.raises(kopf.PermanentError, match="numTokens"):
        await reconcile(context, body)
    assert resource_status(api)["phase"] == "Failed"
    assert conditions(api)["Accepted"] == ("False", "InvalidSpec")
    assert ("Warning", "InvalidSpec") in events(api)
    assert api.stored(DEPLOYMENT, "ml", "chat") is None


async def test_a_refused_spec_keeps_the_recorded_replica_count(
    context: OperatorContext, api: InMemoryKubeApi, inference_deployment: InferenceDeploymentFactory
) -> None:
    # The Deployment is left as it is while the spec is refused, and so is the count it is driven to:
    # an autoscaling decision recorded in status.desiredReplicas is where a fixed spec resumes from.
    refused = {**AUTOSCALED, "runtime": {"speculative": {"method": "ngram"}}}
    with pytest.raises(kopf.PermanentError, match="numTokens"):
        await reconcile(context, inference_deployment(refused, status={"desiredReplicas": 3}))
    assert resource_status(api)["desiredReplicas"] == 3
    await reconcile(context, inference_deployment(AUTOSCALED, status=resource_status(api)))
    assert (api.stored(DEPLOYMENT, "ml", "chat") or {})["spec"]["replicas"] == 3


async def test_gpu_product_outside_the_allow_list_is_refused(
    api: InMemoryKubeApi, context: OperatorContext, inference_deployment: InferenceDeploymentFactory
) -> None:
    context.settings = OperatorSettings(gpu_products=("NVIDIA-A100-SXM4-80GB",))
    with pytest.raises(kopf.PermanentError, match="NVIDIA-H100-80GB-HBM3"):
        await reconcile(context, inference_deployment())
    assert conditions(api)["Accepted"] == ("False", "UnsupportedGpuProduct")
    message = next(c["message"] for c in resource_status(api)["conditions"] if c["type"] == "Accepted")
    assert "accepted: NVIDIA-A100-SXM4-80GB" in message


async def test_missing_secret_waits_and_recovers_once_it_exists(
    context: OperatorContext, api: InMemoryKubeApi, inference_deployment: InferenceDeploymentFactory
) -> None:
    spec = {
        "model": {"name": "m", "source": "hf://org/m", "credentialsSecretRef": {"name": "hf-token"}},
        "serving": {"apiKeySecretRef": {"name": "chat-key", "key": "token"}},
    }
    body = inference_deployment(spec)
    with pytest.raises(kopf.TemporaryError) as error:
        await reconcile(context, body)
    assert error.value.delay == context.settings.missing_secret_retry_seconds
    assert conditions(api)["Accepted"] == ("False", "SecretNotFound")
    assert "hf-token" in str(error.value)
    api.put({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "hf-token", "namespace": "ml"}})
    api.put(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "chat-key", "namespace": "ml"},
            "data": {},
        }
    )
    with pytest.raises(kopf.TemporaryError, match="has no key 'token'"):
        await reconcile(context, api.stored(INFERENCE_DEPLOYMENT, "ml", "chat") or {})
    api.put(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "chat-key", "namespace": "ml"},
            "data": {"token": "eA=="},
        }
    )
    await reconcile(context, api.stored(INFERENCE_DEPLOYMENT, "ml", "chat") or {})
    assert conditions(api)["Accepted"] == ("True", "Applied")
    assert resource_status(api)["phase"] == "Pending"


async def test_without_permission_to_read_secrets_the_check_is_skipped(
    context: OperatorContext, api: InMemoryKubeApi, inference_deployment: InferenceDeploymentFactory
) -> None:
    api.forbidden_kinds.add(SECRET.kind)
    spec = {"model": {"name": "m", "source": "s3://bucket/m", "credentialsSecretRef": {"name": "s3"}}}
    await reconcile(context, inference_deployment(spec))
    assert api.stored(DEPLOYMENT, "ml", "chat") is not None


async def test_a_name_that_cannot_name_a_service_is_refused(
    context: OperatorContext, api: InMemoryKubeApi, inference_deployment: InferenceDeploymentFactory
) -> None:
    body = inference_deployment()
    renamed = copy.deepcopy(body)
    renamed["metadata"]["name"] = "chat.v2"
    api.remove(body)
    api.put(renamed)
    with pytest.raises(kopf.PermanentError, match="RFC 1035"):
        await reconcile(context, renamed)
    stored = api.stored(INFERENCE_DEPLOYMENT, "ml", "chat.v2") or {}
    assert {c["type"]: c["reason"] for c in stored["status"]["conditions"]}["Accepted"] == "InvalidName"
    assert api.stored(DEPLOYMENT, "ml", "chat.v2") is None


async def test_a_child_name_held_by_a_foreign_object_is_reported_and_nothing_is_written(
    context: OperatorContext, api: InMemoryKubeApi, inference_deployment: InferenceDeploymentFactory
) -> None:
    theirs = api.put(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "chat", "namespace": "ml", "labels": {"team": "search"}},
            "spec": {"ports": [{"port": 443}]},
        }
    )
    body = inference_deployment()
    with pytest.raises(kopf.TemporaryError) as first:
        await reconcile(context, body)
    with pytest.raises(kopf.TemporaryError) as third:
        await reconcile(context, body, retry=2)

    assert (first.value.delay, third.value.delay) == (15.0, 60.0)
    assert conditions(api)["Accepted"] == ("False", "ChildConflict")
    message = next(c["message"] for c in resource_status(api)["conditions"] if c["type"] == "Accepted")
    assert "Service ml/chat already exists and has no controller owner reference" in message
    assert resource_status(api)["phase"] == "Failed"
    assert ("Warning", "ChildConflict") in events(api)
    assert [w.kind for w in api.writes if w.verb == "apply" and w.subresource is None] == []
    assert api.stored(SERVICE, "ml", "chat") == theirs

    api.remove(theirs)  # the object in the way goes: the next retry applies everything
    results = await reconcile(context, api.stored(INFERENCE_DEPLOYMENT, "ml", "chat") or {}, retry=3)
    assert {r.outcome for r in results} == {"created"}
    assert conditions(api)["Accepted"] == ("True", "Applied")


async def test_a_child_the_api_server_refuses_is_reported_with_its_message_and_retried(
    context: OperatorContext, api: InMemoryKubeApi, inference_deployment: InferenceDeploymentFactory
) -> None:
    refusal = 'Deployment.apps "chat" is invalid: spec.template.spec.priorityClassName: Invalid value: "A B"'
    api.refused_applies["Deployment"] = refusal
    with pytest.raises(kopf.TemporaryError) as error:
        await reconcile(context, inference_deployment(), retry=10)

    assert error.value.delay == 300.0
    assert conditions(api)["Accepted"] == ("False", "ApplyFailed")
    message = next(c["message"] for c in resource_status(api)["conditions"] if c["type"] == "Accepted")
    assert message == f"the API server refused Deployment ml/chat: {refusal}"
    assert ("Warning", "ApplyFailed") in events(api)
