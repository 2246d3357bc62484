"""{{package}}: the project's own code.

Every dlforge stage command run from the project's root can import it
(``model.net._target_: {{package}}.nets.<Class>``) without installing the
project, and a trained model's package carries it, so that evaluation, the
registry, serving and the MLflow pyfunc load the model anywhere dlforge is
installed.
"""
