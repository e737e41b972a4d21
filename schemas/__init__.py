"""Package data: one Avro schema (``<RecordName>.avsc``) per record of ``streams/events.py``.

The files are the source of truth for the wire format; ``durable_kafka.streams.codec`` loads
them with importlib.resources. Rules for changing them are in docs/SCHEMAS.md.
"""
