# Tokenise once per (task, tokenizer), then one rule trains every run: reference (= ERM of
# that model), main and baseline runs. Run folders come from ftft.layout; params hold only
# that run's spec, so changing one model's settings re-runs only the runs that depend on it.


rule tokenize:
    input:
        unpack(lambda w: PLAN.tokenize_inputs(w.task, w.tokenizer)),
    output:
        directory(L.tokenized()),
    log:
        L.log("tokenize", "{task}/{tokenizer}"),
    conda:
        "../envs/ftft.yaml"
    params:
        settings=lambda w: PLAN.tokenize_params(w.task, w.tokenizer),
    script:
        "../scripts/tokenize.py"


rule train:
    input:
        unpack(lambda w: PLAN.train_inputs(PLAN.run_of(w))),
    output:
        metrics=L.run_file("metrics.csv"),
        predictions=L.run_file("predictions.parquet"),
        dynamics=L.run_file("dynamics.npz"),
        record=L.run_file("run.json"),
    log:
        L.train_log(),
    benchmark:
        L.train_benchmark()
    conda:
        "../envs/ftft.yaml"
    threads: PLAN.cfg["training"]["threads"]
    resources:
        gpu=PLAN.cfg["cluster"]["train_gpus"],
        mem_mb=lambda w: PLAN.mem_mb(PLAN.run_of(w)),
        runtime=lambda w: PLAN.runtime_min(PLAN.run_of(w)),  # minutes
        gpu_model=PLAN.cfg["cluster"]["gpu_model"] or "",  # --gpus=MODEL:1; "" any
    params:
        spec=lambda w: PLAN.train_spec(PLAN.run_of(w)),
    script:
        "../scripts/train.py"


# A PoE bias model's reference run also writes the eval-mode log-probabilities of its final
# weights on the training set (bias_logp.parquet): the same job, one declared output more.
use rule train as train_bias_model with:
    output:
        metrics=L.run_file("metrics.csv"),
        predictions=L.run_file("predictions.parquet"),
        dynamics=L.run_file("dynamics.npz"),
        record=L.run_file("run.json"),
        bias=L.run_file("bias_logp.parquet"),
    wildcard_constraints:
        **PLAN.bias_model_constraint(),


ruleorder: train_bias_model > train
