"Shared pytest setup for the afd_nb suite."
import pytest, torch


@pytest.fixture(scope='session', autouse=True)
def one_thread():
    "The suite's tensors are tiny: on a shared 2-core machine one torch thread is several times faster than two."
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
