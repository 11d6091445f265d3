"""The command line: ``maskcore export|import|run``, job files (YAML and Supervisely DTL) and the
mapping of flags to an export configuration."""
