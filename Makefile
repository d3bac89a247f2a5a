# napari-paraspinal: `make demo` sets everything up and runs the main job on phantom slices;
# `make test` sets everything up and runs the whole test suite. Both are idempotent.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
PYTEST := $(PY) -m pytest
XVFB   := $(shell command -v xvfb-run 2>/dev/null)

.PHONY: setup demo test lint wheel clean atlas model model-synth model-heldout model-phantom installer

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first: 2.13.0 is the local CPU wheel; anything else would pull CUDA packages
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[gui,cluster,test]"
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(VENV)/bin/paraspinal phantom demo-data --n 4 --seed 900000 --level both
	$(VENV)/bin/paraspinal run demo-data/images --out demo-output

# the shipped level atlases (models/atlases): 20 phantoms per level, seeds kept apart from
# the tests' and benchmarks' seeds
atlas: setup
	rm -rf build/atlas-data
	$(VENV)/bin/paraspinal phantom build/atlas-data --n 40 --seed 700000 --level both
	$(VENV)/bin/paraspinal atlas build build/atlas-data --out models/atlases

# the synthetic-only model (selectable, and the first leg of the shipped one): a width-16
# U-Net (instance norm, no CRF) trained on synthetic slices of random contrast painted in the
# body frame, with the real MF/ES outlines of ../shared/data/mri515_t2_labels when present
# (its card records which). 4500 steps of 8 crops of 192²; --device cuda on a GPU. A killed
# run goes on with the same command (checkpoint in build/synth-training); a bundle already
# there is kept (delete the folder to train it again).
model-synth: setup
	[ -d models/paraspinal-synth ] || $(VENV)/bin/paraspinal train-synth \
		--out models/paraspinal-synth --name paraspinal-synth \
		--steps 4500 --checkpoint build/synth-training --resume

# the shipped model: 1200 more steps from paraspinal-synth with the labelled real slices of
# ../shared/data (lpm_tum01 water, fat and in-phase; musclemap_sub0001) as a quarter of every
# batch, half of them through a random intensity curve (see README, *Accuracy on real scans*, for how long and what it gives)
model: model-synth
	$(VENV)/bin/paraspinal train-synth --out models/paraspinal-synth-real \
		--name paraspinal-synth-real --init models/paraspinal-synth --steps 1200 --lr 1e-3 \
		--real lpm_tum01,musclemap_sub0001 --real-share 0.25 --real-remap 0.5 \
		--checkpoint build/synth-real-training --resume

# the shipped recipe with one real case each, to score the other unseen:
# paraspinal bench real --unseen build/synth-real-mm --unseen build/synth-real-lpm
model-heldout: model-synth
	$(VENV)/bin/paraspinal train-synth --out build/synth-real-mm --name paraspinal-synth-real-mm \
		--init models/paraspinal-synth --steps 1200 --lr 1e-3 --real musclemap_sub0001 \
		--real-share 0.25 --real-remap 0.5 --checkpoint build/synth-real-mm.training --resume
	$(VENV)/bin/paraspinal train-synth --out build/synth-real-lpm --name paraspinal-synth-real-lpm \
		--init models/paraspinal-synth --steps 1200 --lr 1e-3 --real lpm_tum01 \
		--real-share 0.25 --real-remap 0.5 --checkpoint build/synth-real-lpm.training --resume

# the paper's way, kept selectable (--model models/paraspinal-phantom-t2w): 240 + 40 phantoms
# through the atlas chain, U-Net (width 8, instance norm) then U-Net + CRF, early stopping.
# Batch 4, not the paper's 20: on a CPU budget five times more Adam steps per epoch is what
# made a width-8 network learn. About 25 min on a 2-core CPU.
model-phantom: setup
	$(VENV)/bin/paraspinal train --out models/paraspinal-phantom-t2w --name paraspinal-phantom-t2w \
		--phantoms 240 --val 40 --seed 100000 --width 8 --norm instance --batch-size 4 \
		--epochs 16 --joint-epochs 2 --patience 4

test: setup
ifdef XVFB
	$(XVFB) -a $(PYTEST) -q
else
	$(PYTEST) -q
endif

lint: setup
	$(VENV)/bin/ruff check .

wheel: setup
	$(PY) -m pip wheel --no-deps -w dist .

# the self-contained Linux bundle (PyInstaller, installer/paraspinal.spec): the folder
# build/installer/dist/napari-paraspinal (paraspinal-app, paraspinal) and its tarball
# build/installer/napari-paraspinal-linux-x86_64.tar.gz; check it with
# `xvfb-run -a build/installer/dist/napari-paraspinal/paraspinal-app --self-test`
installer: setup
	$(PY) -m pip install -q pyinstaller
	nice -n 10 $(PY) installer/build.py --archive --out build/installer

clean:
	rm -rf demo-data demo-output dist build *.egg-info
