"The job notebooks' papermill parameters: every one is visible to `papermill --help-notebook` with its default."
import ast, json
import pytest
from afd_nb.core import repo_root


def parameters_cell(name: str) -> str:
    nb = json.loads((repo_root()/'nbs'/name).read_text())
    cells = [c for c in nb['cells'] if 'parameters' in c.get('metadata', {}).get('tags', [])]
    assert len(cells) == 1, f"{name}: expected one cell tagged 'parameters', found {len(cells)}"
    return ''.join(cells[0]['source'])


@pytest.mark.parametrize('name', ['train_afd.ipynb', 'pretrain_student.ipynb'])
def test_papermill_lists_every_parameter_with_its_default(name):
    "papermill's parser skips a line with a second '=' (e.g. in its comment): that parameter would vanish from the help."
    import papermill
    src = parameters_cell(name)
    defaults = {n.targets[0].id: n.value for n in ast.parse(src).body if isinstance(n, ast.Assign)}
    listed = papermill.inspect_notebook(str(repo_root()/'nbs'/name))
    assert sorted(listed) == sorted(defaults), sorted(set(defaults) ^ set(listed))
    for k, node in defaults.items():
        assert ast.literal_eval(listed[k]['default']) == ast.literal_eval(node), k
        assert listed[k]['help'], f"{name}: parameter {k!r} has no comment saying what it is"
