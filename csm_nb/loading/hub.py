"""Files from the Hugging Face hub (or its local cache): the one place csm_nb downloads.

Every failure becomes an OSError that says what happened and what to do (log in, accept the
terms, download once elsewhere, point a variable at a local copy). $HF_HUB_OFFLINE and
$HF_HUB_CACHE are read at each call (csm_nb/env.py), not once when huggingface_hub is imported.
"""

from __future__ import annotations

from .. import env


def hub_file(repo_id: str, filename: str, token=None, revision: str | None = None,
             local_env: str = env.WEIGHTS) -> str:
    """Path of a file from the hub (or its local cache), with errors that say how to fix.

    local_env: the variable that can point at a local copy instead ($CSM_NB_WEIGHTS for the
    CSM checkpoint, $CSM_NB_MIMI for Mimi); the errors name it.
    """
    import huggingface_hub as hf
    from huggingface_hub import errors as hf_errors

    try:
        return hf.hf_hub_download(repo_id, filename, token=token, revision=revision,
                                  cache_dir=env.hub_cache_dir(),
                                  local_files_only=env.hub_offline())
    except hf_errors.GatedRepoError as err:
        raise OSError(
            f"{repo_id} is gated and this machine has no access: accept the terms at "
            f"https://huggingface.co/{repo_id}, then log in (`huggingface-cli login`, or set "
            f"$HF_TOKEN, or pass token=...); or point ${local_env} at a local copy") from err
    except hf_errors.RepositoryNotFoundError as err:
        raise OSError(f"{repo_id} was not found on the hub (or it is private and you are not "
                      "logged in): check the name, or log in with `huggingface-cli login`"
                      ) from err
    except hf_errors.LocalEntryNotFoundError as err:
        raise OSError(
            f"{filename} of {repo_id} is not in the local cache and the hub cannot be reached "
            "(offline, HF_HUB_OFFLINE=1, or no network): download it once on a connected "
            f"machine (`huggingface-cli download {repo_id}`) or set ${local_env} to a "
            "folder holding it") from err
    except hf_errors.EntryNotFoundError as err:
        raise OSError(f"{repo_id} has no file {filename}; check the repo and revision") from err
    except OSError as err:    # connection refused, DNS, timeouts, HTTP 5xx (HfHubHTTPError)
        raise OSError(
            f"downloading {filename} of {repo_id} failed ({type(err).__name__}: {err}); the hub "
            "may be unreachable from here (no network, a proxy or firewall) or down: try again "
            f"later, or download it once elsewhere and set ${local_env} to a folder holding "
            "it") from err
