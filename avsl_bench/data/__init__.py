"""Dataset preparation: plan, acquire, cut, shard, manifest (see ../shared/spec/data.md)."""
