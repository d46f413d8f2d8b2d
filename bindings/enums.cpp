// The core's enums as Python enums (medscore._core.SelectionMethod, ...): Python code passes
// these values, never strings, and takes the lists of valid choices from their members.
#include <pybind11/pybind11.h>

#include "medscore/error_memory.hpp"
#include "medscore/memory.hpp"
#include "medscore/select.hpp"
#include "registrations.hpp"

namespace py = pybind11;

void register_enums(py::module_& m) {
    py::enum_<medscore::SelectionMethod>(m, "SelectionMethod", "How clusters are chosen from the condensed tree.")
        .value("eom", medscore::SelectionMethod::eom)
        .value("leaf", medscore::SelectionMethod::leaf);
    py::enum_<medscore::AssignRule>(m, "AssignRule", "How a new rollout's cluster is decided (memory.hpp).")
        .value("exact", medscore::AssignRule::exact)
        .value("paper", medscore::AssignRule::paper);
    py::enum_<medscore::StoreRule>(m, "StoreRule", "Which rollouts a Memory stores (error_memory.hpp).")
        .value("wrong", medscore::StoreRule::wrong)
        .value("all", medscore::StoreRule::all);
    py::enum_<medscore::NanRows>(m, "NanRows", "What a fingerprint row of NaN means without a valid mask.")
        .value("error", medscore::NanRows::error)
        .value("skip", medscore::NanRows::skip);
    py::enum_<medscore::PenaltyTarget>(m, "PenaltyTarget", "Which rollouts get a penalty.")
        .value("wrong", medscore::PenaltyTarget::wrong)
        .value("right", medscore::PenaltyTarget::right)
        .value("both", medscore::PenaltyTarget::both)
        .value("none", medscore::PenaltyTarget::none);
}
