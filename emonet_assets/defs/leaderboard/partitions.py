import dagster as dg

# One partition per registered model version (lib.leaderboard.registry.model_key); model_registry adds them.
model_partitions = dg.DynamicPartitionsDefinition(name="model_versions")
