"""The exercise checkers, one module per notebook (``n05_proximal_sft`` holds notebook 05's), on shared machinery.

:mod:`~psft_edu.course.exercises.checking` reports verdicts, reads a learner's answer and runs the two generic
checkers (:func:`~psft_edu.course.exercises.checking.check_implementation` for implement-it exercises,
:func:`~psft_edu.course.exercises.checking.check_prediction` for predict-then-run);
:mod:`~psft_edu.course.exercises.cases` holds the random inputs the implement-it checkers
share. A notebook imports its own module as ``exercises``.

A module whose implement-it checkers go through ``check_implementation`` lists, in ``MISTAKE_MODELS``, each
checker's typical wrong versions; a test feeds every one to its checker and expects that mistake named.

Every ``check_*`` prints one message and returns ``True`` (right), ``False`` (the first mistake named) or ``None``
(not attempted: the answer is still ``None``), so a notebook runs top to bottom untouched.
"""
