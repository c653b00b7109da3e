import dagster as dg

prompt_shard_partitions = dg.DynamicPartitionsDefinition(name="prompt_shards")
