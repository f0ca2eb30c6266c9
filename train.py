"""Fine-tune CM-BERT on CMU-MOSI (or MOSEI, or the synthetic set) with the Hugging Face Trainer: a thin entry point
over the packaged recipe (`cmbert_hf.recipe`); `cmbert train ...` runs the same with the same arguments.

Launch commands:

    # offline demo: MiniLM backbone trained from the audio files of the spoken corpus (espeak-ng), one CPU process
    python train.py --config configs/demo.yaml

    # the spoken corpus at 800 training utterances, three seeds; text only, the original code's settings, and
    # espeak's true word boundaries instead of pocketsphinx's
    python train.py --config configs/demo.yaml --dataset_options '{train_size: 800}' --data_dir outputs/spoken-800 \
        --num_train_epochs 6 --seeds 1111 1112 1113 --output_dir outputs/spoken [--text_only | --original |
        --timings_column true_timings]

    # the paper's recipe on the CM-BERT release (bert-base-uncased), five seeds
    python train.py --config configs/cmbert_mosi.yaml --data_dir /path/to/cmbert --seeds 1111 1112 1113 1114 1115

    # text-only baseline through the same code
    python train.py --config configs/tbert_mosi.yaml --data_dir /path/to/cmbert

    # two CPU processes (gloo), one GPU, several GPUs, several machines, FSDP, DeepSpeed ZeRO-2
    accelerate launch --config_file configs/accelerate/cpu_2proc.yaml train.py --config configs/demo.yaml \\
        --per_device_train_batch_size 12
    accelerate launch --config_file configs/accelerate/single_gpu.yaml train.py --config configs/cmbert_mosi.yaml
    accelerate launch --config_file configs/accelerate/multi_gpu.yaml train.py --config configs/cmbert_mosi.yaml
    accelerate launch --config_file configs/accelerate/multi_node.yaml --machine_rank 0 \\
        --main_process_ip 10.0.0.1 train.py --config configs/cmbert_mosi.yaml
    accelerate launch --config_file configs/accelerate/fsdp.yaml train.py --config configs/cmbert_mosi.yaml
    accelerate launch --config_file configs/accelerate/deepspeed_zero2.yaml train.py --config configs/cmbert_mosi.yaml

    # The batch size is per process: to keep the recipe's 24 on N processes, pass
    # --per_device_train_batch_size 24/N (as for the 2 CPU processes above), or accept a global batch of 24 N.

    # hyperparameter search (Optuna, resumable), then the best trial over three seeds; the same on a Ray cluster
    python train.py --config configs/tbert_mosi_minilm.yaml --search configs/search/mosi_minilm.yaml --seeds 1111 1112 1113
    python train.py --config configs/tbert_mosi_minilm.yaml --search configs/search/mosi_minilm.yaml \\
        --seeds 1111 1112 1113 --ray_address auto --ray_cpus_per_trial 4 --ray_gpus_per_trial 1

    # end on the Hub (HF_TOKEN or `hf auth login`): the finished folder is pushed once
    python train.py --config configs/demo.yaml --push_to_hub --hub_model_id you/cm-bert-demo

    # the same from an installed package, anywhere
    cmbert train --config configs/demo.yaml

`--config x.yaml` sets defaults (keys are the argument names of `--help`), command-line flags override them,
unknown keys are an error. `cmbert_hf.recipe`'s docstring says what a run writes and how reruns resume.
"""

import sys

from cmbert_hf.recipe import command_line

if __name__ == "__main__":
    sys.exit(command_line(prog="train.py"))

