"""Training and prediction of the reference baselines: one loop, shard data, seeding, `torchrun` data
parallelism, prediction archives and audio controls.

Public API (the CLI calls these):

* `avsl_bench.train.loop.train(method, data, out, config, epochs=None, device="auto", seed=0, ...)` → run.json dict
* `avsl_bench.train.predict.predict(run_dir, data, out, ogl=False, ...)` → summary dict
* `avsl_bench.train.predict.predict_ogl(data, out, weights=...)`, `...predict.method_info(run_dir, ogl=False)`
* `avsl_bench.train.controls.predict_control(run_dir, data, out, kind="distractor"|"shuffle")`
"""
