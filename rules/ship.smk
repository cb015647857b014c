# FTFT as a fine-tuning tool (config key `ship`): rank the candidate references by the paper's
# signals (§4.3), then ship the main model trained on the data map of the recommended (or the
# named) reference, halted at ship.fraction: saved by its DM run at that checkpoint (no extra
# training run). The recommendation exists only once the reference runs are trained, so `screen`
# is a checkpoint and the shipped model's inputs are resolved after it (ship_ref).


# the DM runs that may be shipped also save the model at the halting checkpoint (exports/)
use rule train as train_export with:
    output:
        metrics=L.run_file("metrics.csv"),
        predictions=L.run_file("predictions.parquet"),
        dynamics=L.run_file("dynamics.npz"),
        record=L.run_file("run.json"),
        export=directory(L.export()),
    wildcard_constraints:
        **PLAN.export_constraint(),


ruleorder: train_export > train


if PLAN.cfg["ship"]:

    checkpoint screen:
        input:
            PLAN.screen_inputs(),
        output:
            csv=L.screening("csv"),
            md=L.screening("md"),
            html=report(
                L.screening("html"),
                category="FTFT model",
                labels={"report": "Reference screening"},
            ),
            png=L.screening("png"),
        log:
            L.log("screen", "screen"),
        localrule: True
        conda:
            "../envs/ftft.yaml"
        params:
            results=lambda w: L.results,
        shell:
            "ftft screen --config-json {input[0]:q} --results {params.results:q} "
            "--out {output.csv:q} > {log:q} 2>&1"

    rule ftft_model:
        input:
            config=L.config_json(),
            run=lambda w: PLAN.ship_inputs(ship_ref()),
        output:
            directory(PLAN.shipped_model()),
        log:
            L.log("ship", "ftft_model"),
        localrule: True
        conda:
            "../envs/ftft.yaml"
        params:
            results=lambda w: L.results,
            ref=lambda w: ship_ref(),
            export=lambda w: PLAN.ship_inputs(ship_ref())[0],
        shell:
            "ftft ship --config-json {input.config:q} --results {params.results:q} "
            "--ref {params.ref:q} --export {params.export:q} --out {output:q} > {log:q} 2>&1"


# ship.erm: the main model's ERM run (saved at the end of its schedule), shipped beside it for comparison
if PLAN.cfg["ship"] and PLAN.cfg["ship"]["erm"]:

    rule erm_model:
        input:
            config=L.config_json(),
            run=PLAN.ship_inputs("none"),
        output:
            directory(PLAN.shipped_model(erm=True)),
        log:
            L.log("ship", "erm_model"),
        localrule: True
        conda:
            "../envs/ftft.yaml"
        params:
            results=lambda w: L.results,
            export=PLAN.ship_inputs("none")[0],
        shell:
            "ftft ship --config-json {input.config:q} --results {params.results:q} "
            "--ref none --export {params.export:q} --out {output:q} > {log:q} 2>&1"
