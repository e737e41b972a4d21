"""The public surface users port durabletask code against: a change here is a breaking change."""

import durable_kafka
from durable_kafka import task

EXPECTED = {
    "ActivityContext", "AsyncClient", "CleanEntityStorageResult", "Client", "DurableEntity", "DurableKafkaError",
    "EntityContext", "EntityInstanceId", "EntityMetadata", "EntityQuery", "FailureDetails",
    "InstanceAlreadyExistsError", "InstanceNotFoundError", "InvalidInstanceIdError", "NonDeterminismError",
    "OrchestrationContext", "OrchestrationFailedError", "OrchestrationQuery", "OrchestrationState",
    "OrchestrationStatus", "PurgeInstancesResult", "RetryPolicy", "TaskFailedError", "Worker", "errors",
    "VersionFailureStrategy", "VersionMatchStrategy", "VersioningOptions", "InstanceNotFailedError",
    "get_name", "task", "triggers", "when_all", "when_any",
    # large payloads (docs/PAYLOADS.md)
    "FileSystemPayloadStore", "KafkaPayloadStore", "LargePayloadStorageOptions", "PayloadStore", "payload",
    # work-item filters (durabletask names; docs/ROUTING.md)
    "ActivityWorkItemFilter", "EntityWorkItemFilter", "OrchestrationWorkItemFilter", "WorkItemFilters",
}


def test_exported_members_are_exactly_the_documented_ones():
    assert set(durable_kafka.__all__) == EXPECTED
    assert durable_kafka.__all__ == sorted(durable_kafka.__all__)
    for name in durable_kafka.__all__:
        assert getattr(durable_kafka, name) is not None


def test_durabletask_names_on_the_task_module():
    for name in ("when_all", "when_any", "get_name", "RetryPolicy", "OrchestrationContext", "ActivityContext",
                 "Task", "CompositeTask", "WhenAllTask", "WhenAnyTask", "TaskFailedError", "FailureDetails"):
        assert hasattr(task, name), name


def test_client_and_worker_method_names():
    for name in ("schedule_new_orchestration", "get_orchestration_state", "get_orchestration_history",
                 "wait_for_orchestration_start", "wait_for_orchestration_completion", "raise_orchestration_event",
                 "terminate_orchestration", "suspend_orchestration", "resume_orchestration", "restart_orchestration",
                 "purge_orchestration", "get_all_orchestration_states", "signal_entity", "get_entity",
                 "get_all_entities", "clean_entity_storage", "rewind_orchestration"):
        assert callable(getattr(durable_kafka.Client, name)), name
    for name in ("add_orchestrator", "add_activity", "add_entity", "start", "stop", "__enter__", "__exit__",
                 "use_versioning", "use_work_item_filters"):
        assert callable(getattr(durable_kafka.Worker, name)), name


def test_errors_share_one_root():
    from durable_kafka import errors
    classes = [v for v in vars(errors).values() if isinstance(v, type) and issubclass(v, Exception)]
    ours = [c for c in classes if c.__module__ == errors.__name__]
    assert all(issubclass(c, errors.DurableKafkaError) for c in ours)
    assert issubclass(errors.TimeoutError, TimeoutError)
