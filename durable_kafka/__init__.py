"""durable-kafka: Durable Functions for Python, where Kafka is the database."""
