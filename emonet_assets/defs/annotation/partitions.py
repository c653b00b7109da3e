import dagster as dg

annotation_batch_partitions = dg.DynamicPartitionsDefinition(name="annotation_batches")
