# Models: tiny random-init stand-ins built offline (demo mode; one job builds them all, the
# imports cost more than the tiny models), or the hub checkpoints fetched once into the
# Hugging Face cache (paper mode; compute nodes then run offline).


rule build_demo_models:
    input:
        corpus=[L.source(s) for s in PLAN.sources],  # the stand-ins' tokenizers learn every source used
    output:
        [directory(L.demo_model(m)) for m in PLAN.models_from("demo")],
    log:
        L.log("build_demo_models", "build_demo_models"),
    conda:
        "../envs/ftft.yaml"
    params:
        args=PLAN.demo_model_args(),
    shell:
        "ftft build-demo-model {params.args} --corpus {input.corpus:q} > {log:q} 2>&1"


rule fetch_model:
    output:
        L.hub_marker(),
    log:
        L.log("fetch_model", "{model}"),
    localrule: True
    conda:
        "../envs/ftft.yaml"
    params:
        hub_id=lambda w: model_source(PLAN.cfg, w.model),  # id@revision
        env=PLAN.fetch_env(),
    shell:
        "{params.env}ftft fetch-models --model {params.hub_id:q} --marker {output:q} > {log:q} 2>&1"


# `snakemake fetch_models` on a machine with internet (e.g. the login node) fills the HF cache
# with every hub model the config uses; training jobs then run with HF_HUB_OFFLINE=1.
rule fetch_models:
    input:
        [L.hub_marker(m) for m in PLAN.models_from("hub")],
    localrule: True
