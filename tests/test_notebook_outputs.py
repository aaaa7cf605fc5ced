"tools/notebook_outputs.py: the saved outputs' staleness check."
import importlib.util, json, pathlib

ROOT = pathlib.Path(__file__).parents[1]
spec = importlib.util.spec_from_file_location('notebook_outputs', ROOT/'tools'/'notebook_outputs.py')
nbo = importlib.util.module_from_spec(spec); spec.loader.exec_module(nbo)


def _nb(path, code, prose):
    cells = [dict(cell_type='markdown', metadata={}, source=[prose]),
             dict(cell_type='code', metadata={}, source=[code], outputs=[], execution_count=None)]
    path.write_text(json.dumps(dict(cells=cells, metadata={}, nbformat=4, nbformat_minor=5)))
    return path


def test_code_hash_follows_code_not_prose_or_outputs(tmp_path):
    h = nbo.code_hash(_nb(tmp_path/'a.ipynb', 'x = 1', 'prose'))
    assert nbo.code_hash(_nb(tmp_path/'b.ipynb', 'x = 1', 'other prose')) == h
    assert nbo.code_hash(_nb(tmp_path/'c.ipynb', 'x = 2', 'prose')) != h
    nb = json.loads((tmp_path/'a.ipynb').read_text())
    nb['cells'][1]['outputs'] = [dict(output_type='stream', name='stdout', text=['1\n'])]
    (tmp_path/'a.ipynb').write_text(json.dumps(nb))
    assert nbo.code_hash(tmp_path/'a.ipynb') == h


def test_check_fails_on_a_notebook_whose_code_changed(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(nbo, 'ROOT', tmp_path); monkeypatch.setattr(nbo, 'LOCK', tmp_path/'nbs'/'outputs.lock.json')
    (tmp_path/'nbs').mkdir()
    p = _nb(tmp_path/'nbs'/'00_x.ipynb', 'x = 1', 'prose')
    nbo.LOCK.write_text(json.dumps({'00_x.ipynb': nbo.code_hash(p)}))
    assert nbo.check() == 0
    _nb(p, 'x = 2', 'prose')
    assert nbo.check() == 1 and 'rerun: python tools/notebook_outputs.py run nbs/00_x.ipynb' in capsys.readouterr().out
    assert nbo.main(['check']) == 1   # the CLI CI runs
