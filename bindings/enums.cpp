// The core's enums as Python enums (medscore._core.SelectionMethod, ...). Functions of the
// module take these types; a member's name (e.g. "eom") converts to it implicitly, through the
// enum's own __members__, so Python callers and the Numba backend (which takes the names) share
// one call shape. Python takes its lists of valid choices from the members.
#include <pybind11/pybind11.h>

#include <string>

#include "medscore/error_memory.hpp"
#include "medscore/memory.hpp"
#include "medscore/select.hpp"
#include "registrations.hpp"

namespace py = pybind11;

namespace {

/// Lets a member's name stand for the member wherever the enum is an argument.
template <class Enum>
void accept_names(py::enum_<Enum>& type) {
    const py::handle cls = type;  // the module keeps the type alive
    type.def(py::init([cls](const std::string& name) {
        const py::dict members = cls.attr("__members__");
        if (!members.contains(name)) {
            std::string known;
            for (const auto& item : members) known += (known.empty() ? "'" : ", '") + item.first.cast<std::string>() + "'";
            throw py::value_error(cls.attr("__name__").cast<std::string>() + " has no member '" + name + "' (" + known + ")");
        }
        return members[py::str(name)].cast<Enum>();
    }), py::arg("name"));
    py::implicitly_convertible<py::str, Enum>();
}

}  // namespace

void register_enums(py::module_& m) {
    py::enum_<medscore::SelectionMethod> method(m, "SelectionMethod", "How clusters are chosen from the condensed tree.");
    method.value("eom", medscore::SelectionMethod::eom).value("leaf", medscore::SelectionMethod::leaf);
    py::enum_<medscore::AssignRule> assign(m, "AssignRule", "How a new rollout's cluster is decided (memory.hpp).");
    assign.value("exact", medscore::AssignRule::exact).value("paper", medscore::AssignRule::paper);
    py::enum_<medscore::StoreRule> store(m, "StoreRule", "Which rollouts a Memory stores (error_memory.hpp).");
    store.value("wrong", medscore::StoreRule::wrong).value("all", medscore::StoreRule::all);
    py::enum_<medscore::NanRows> nan_rows(m, "NanRows", "What a fingerprint row of NaN means without a valid mask.");
    nan_rows.value("error", medscore::NanRows::error).value("skip", medscore::NanRows::skip);
    py::enum_<medscore::PenaltyTarget> target(m, "PenaltyTarget", "Which rollouts get a penalty.");
    target.value("wrong", medscore::PenaltyTarget::wrong)
        .value("right", medscore::PenaltyTarget::right)
        .value("both", medscore::PenaltyTarget::both)
        .value("none", medscore::PenaltyTarget::none);
    accept_names(method);
    accept_names(assign);
    accept_names(store);
    accept_names(nan_rows);
    accept_names(target);
}
