"""The run page, ``RUN/report.html``: did the run work, and what now.

``dbooth.runpage.page.write_run_page(run_dir)`` builds it whole from the run folder's files: the verdict and
the next commands (``verdict``), the settings, the loss curve and validation images by step (``sections``,
drawn by ``charts``), the evaluation (``eval_view``), samples, files and what each figure means
(``files_view``, ``glossary``). ``refresh_run_page`` is the same for a verb that must not fail because of it.
Torch-free; this package file imports nothing, so ``dbooth status`` can name the page at no cost.
"""

PAGE_FILE = "report.html"
