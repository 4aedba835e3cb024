package handlers

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/foundry-gateway/gateway/internal/httperr"
	"github.com/foundry-gateway/gateway/internal/ledger"
)

// usageReporter reads usage reports (ledger.Daily).
type usageReporter interface {
	Report(ctx context.Context, q ledger.Query) ([]ledger.Row, error)
}

// UsageAuthorizer decides who may read usage: admin sees every team; a
// non-admin caller sees only team. An error (for example a bad key) is
// returned to the client as is, so it should be an *httperr.Error.
type UsageAuthorizer func(r *http.Request) (team string, admin bool, err error)

// UsageReport serves GET /admin/usage (and /gateway/admin/usage): the usage
// report with the options of `handler usage report`:
//
//	from, to   yyyy-mm-dd, UTC, both included (default: the last 7 days up to today)
//	by         comma-separated: date, team, app, model, class (default team)
//	format     json (default), csv or table
//	team       only this team (a non-admin caller may only name its own)
func UsageReport(rep usageReporter, authz UsageAuthorizer, now func() time.Time) echo.HandlerFunc {
	if now == nil {
		now = time.Now
	}
	return func(c echo.Context) error {
		r := c.Request()
		team, admin, err := authz(r)
		if err != nil {
			return err
		}
		v := r.URL.Query()
		q, format, err := ledger.ParseQuery(v.Get("from"), v.Get("to"), v.Get("by"), v.Get("format"), now())
		if err != nil {
			return httperr.BadRequest("invalid_request_error", err.Error())
		}
		q.Team = v.Get("team")
		if !admin {
			if team == "" || (q.Team != "" && q.Team != team) {
				return httperr.Forbidden("forbidden", "This key may only read the usage of its own team.")
			}
			q.Team = team
		}
		rows, err := rep.Report(r.Context(), q)
		if errors.Is(err, ledger.ErrBadQuery) {
			return httperr.BadRequest("invalid_request_error", err.Error())
		}
		if err != nil {
			return httperr.Wrap(err, http.StatusServiceUnavailable, "usage_unavailable", "The usage tables cannot be read right now.")
		}
		h := c.Response().Header()
		h.Set("Cache-Control", "no-store")
		switch format {
		case ledger.FormatCSV:
			h.Set("Content-Type", "text/csv; charset=utf-8")
			h.Set("Content-Disposition", `attachment; filename="usage-`+ledger.Day(q.From)+`-`+ledger.Day(q.To)+`.csv"`)
		case ledger.FormatTable:
			h.Set("Content-Type", "text/plain; charset=utf-8")
		default:
			h.Set("Content-Type", "application/json")
		}
		c.Response().WriteHeader(http.StatusOK)
		return ledger.Write(c.Response(), format, q, rows)
	}
}

// UsagePage serves GET /admin/usage/ui (and /gateway/admin/usage/ui): a
// self-contained chargeback page (no CDN). It reads the JSON report next to
// it: a breakdown by team, app, model and class with errors, charts per day,
// a team filter, month presets and one total per currency (the report's
// totals; costs shown with the report's 6 decimals). The key is typed into
// the form and kept in sessionStorage for the tab; a ?key= in the address
// is never used, and is removed from the address bar (history.replaceState)
// so it does not stay in the history.
func UsagePage() echo.HandlerFunc {
	return func(c echo.Context) error {
		h := c.Response().Header()
		h.Set("Content-Security-Policy", "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src data: blob:")
		h.Set("Cache-Control", "no-store")
		h.Set("Referrer-Policy", "no-referrer")
		return c.HTML(http.StatusOK, usagePageHTML)
	}
}

const usagePageHTML = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>Usage and chargeback · Foundry Gateway</title>
<style>
:root{--ink:#1d2733;--mute:#5b6b7c;--line:#e3e8ee;--bg:#f6f8fa;--card:#fff}
*{box-sizing:border-box}body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--ink);background:var(--bg)}
header{background:#12324f;color:#fff;padding:14px 24px;display:flex;align-items:baseline;gap:16px}
header h1{margin:0;font-size:19px;font-weight:600}header span{opacity:.8}
main{padding:18px 24px;max-width:1400px;margin:0 auto}
form{display:flex;flex-wrap:wrap;gap:10px;align-items:end;margin-bottom:10px}
label{display:flex;flex-direction:column;font-size:12px;color:var(--mute);gap:3px}
input,select{font:inherit;padding:5px 8px;border:1px solid #c5ced8;border-radius:4px;background:#fff}
button,a.btn{font:inherit;padding:6px 14px;border:0;border-radius:4px;background:#1f6feb;color:#fff;cursor:pointer;text-decoration:none}
a.btn{background:#57606a}
.cards{display:flex;gap:12px;margin-bottom:14px;flex-wrap:wrap}
.card{background:var(--card);border:1px solid var(--line);border-radius:6px;padding:10px 16px;min-width:170px}
.card b{display:block;font-size:21px;font-weight:600}.card small{color:var(--mute)}
.card.cost b{color:#12324f}
.charts{display:grid;grid-template-columns:repeat(auto-fit,minmax(420px,1fr));gap:12px;margin-bottom:14px}
.panel{background:var(--card);border:1px solid var(--line);border-radius:6px;padding:10px 14px}
.panel h2{font-size:14px;margin:0 0 6px}
.legend{display:flex;gap:14px;flex-wrap:wrap;font-size:12px;color:var(--mute);margin-bottom:6px}
.legend i{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:5px;vertical-align:-1px}
table{border-collapse:collapse;width:100%;background:var(--card);border:1px solid var(--line)}
th,td{padding:5px 10px;border-bottom:1px solid var(--line);text-align:right;white-space:nowrap}
th{background:#eef2f6;font-weight:600;font-size:12px}th:nth-child(-n+4),td:nth-child(-n+4){text-align:left}
td.err{color:#b42318}
tfoot td{font-weight:600;background:#f3f6f9}
#msg{color:#b42318;margin:6px 0}#notice{color:#9a6700;margin:6px 0}
.note{color:var(--mute);font-size:12px;margin-top:8px}
</style></head><body>
<header><h1>Usage and chargeback</h1><span>Foundry Gateway · cost per team, app, model and class (UTC)</span></header>
<main>
<form id="f" autocomplete="off"><label>Gateway key<input id="key" type="password" size="30" placeholder="fgw-…" autocomplete="off"></label>
<label>Period<select id="preset"></select></label>
<label>From<input id="from" type="date"></label><label>To<input id="to" type="date"></label>
<label>Team<input id="team" list="teams" size="14" placeholder="all teams"><datalist id="teams"></datalist></label>
<button type="submit">Show</button><a class="btn" id="csv" href="#">Download CSV</a></form>
<div id="notice"></div><div id="msg"></div>
<div class="cards" id="cards"><div class="card"><small>Requests</small><b id="treq">–</b></div>
<div class="card"><small>Errors</small><b id="terr">–</b></div>
<div class="card"><small>Total tokens</small><b id="ttok">–</b></div>
<div class="card"><small>Teams</small><b id="tteams">–</b></div>
<div class="card"><small>Cache hits · saved tokens</small><b id="tsaved">–</b></div></div>
<div class="legend" id="legend"></div>
<div class="charts" id="charts"></div>
<table><thead><tr><th>Team</th><th>App</th><th>Model</th><th>Class</th><th>Requests</th><th>Errors</th><th>Prompt tokens</th><th>Cached tokens</th><th>Completion tokens</th><th>Total tokens</th><th>Cost</th><th>Currency</th><th>Cache hits</th><th>Saved tokens</th><th>Saved cost</th></tr></thead>
<tbody id="rows"></tbody><tfoot id="foot"></tfoot></table>
<p class="note">Cost is computed per request, exactly, from the configured price per million tokens: (prompt − cached) × input + cached × cached input + completion × output, and shown with 6 decimals.
Totals are per currency; amounts in different currencies are never added. Errors are calls that failed (status 0 or ≥ 400); they are counted in requests.
Today's and yesterday's figures are live; past days come from the UsageDaily table.
Cache hits are calls the gateway's response cache answered: they spend no backend tokens (their token columns are 0); saved tokens and saved cost are what the original call used, less the share a hit is charged (cache.costFraction).</p>
</main>
<script>
(function(){
var $=function(id){return document.getElementById(id)};
var base=location.pathname.replace(/\/ui\/?$/,'');
var params=new URLSearchParams(location.search);
if(params.has('key')){
 // A key in the address would stay in the history and in logs: never use
 // it, and take it out of the address bar.
 params.delete('key');var q=params.toString();
 history.replaceState(null,'',location.pathname+(q?'?'+q:'')+location.hash);
 $('notice').textContent='A key in the address (?key=) is not used and was removed from it; type the key into the form.';
}
var iso=function(t){return t.toISOString().slice(0,10)};
var now=new Date(),today=iso(now);
function monthRange(k){var y=now.getUTCFullYear(),m=now.getUTCMonth()-k;var a=new Date(Date.UTC(y,m,1)),b=new Date(Date.UTC(y,m+1,0));return [iso(a),k===0?today:iso(b)]}
var presets=[];for(var k=0;k<12;k++){var r=monthRange(k);presets.push({label:(k===0?'This month':k===1?'Last month':r[0].slice(0,7)),from:r[0],to:r[1]})}
presets.push({label:'Last 30 days',from:iso(new Date(now.getTime()-29*864e5)),to:today});
$('preset').innerHTML=presets.map(function(p,i){return '<option value="'+i+'">'+p.label+'</option>'}).join('')+'<option value="c">Custom</option>';
function applyPreset(){var v=$('preset').value;if(v==='c')return;var p=presets[+v];$('from').value=p.from;$('to').value=p.to}
$('preset').onchange=function(){applyPreset();load()};
$('from').onchange=$('to').onchange=function(){$('preset').value='c'};
$('preset').value='0';applyPreset();
if(params.get('from')&&params.get('to')){$('from').value=params.get('from');$('to').value=params.get('to');$('preset').value='c'}
$('team').value=params.get('team')||'';
$('key').value=sessionStorage.getItem('fgwKey')||'';
var colors=['#1f6feb','#e8833a','#2da44e','#a371f7','#d1242f','#bf8700','#0a7f8c','#8250df'];
var esc=function(s){return String(s).replace(/&/g,'&amp;').replace(/</g,'&lt;').replace(/"/g,'&quot;')};
function fmt(n){return Number(n).toLocaleString('en-US')}
function money(n){return Number(n).toLocaleString('en-US',{minimumFractionDigits:6,maximumFractionDigits:6})}
function url(by,f){var u=base+'?by='+by+'&format='+f+'&from='+$('from').value+'&to='+$('to').value;var t=$('team').value.trim();return t?u+'&team='+encodeURIComponent(t):u}
function hdr(){var k=$('key').value.trim();return k?{'Authorization':'Bearer '+k}:{}}
function get(u){return fetch(u,{headers:hdr()}).then(function(r){return r.json().then(function(j){if(!r.ok)throw new Error((j.error&&j.error.message)||r.statusText);return j})})}
function days(a,b){var out=[],t=new Date(a+'T00:00:00Z'),e=new Date(b+'T00:00:00Z');for(;t<=e&&out.length<400;t=new Date(t.getTime()+864e5))out.push(iso(t));return out}
function chart(ds,teams,val,label,isCost){
 var W=600,H=240,L=70,B=34,T=10,R=8,max=0;
 ds.forEach(function(d){var s=0;teams.forEach(function(t){s+=val(d,t)});max=Math.max(max,s)});
 if(max<=0)max=1;var step=Math.pow(10,Math.floor(Math.log10(max))),top=Math.ceil(max/step)*step;
 var bw=(W-L-R)/ds.length,s='<svg viewBox="0 0 '+W+' '+H+'" width="100%" role="img" aria-label="'+esc(label)+'">';
 for(var i=0;i<=4;i++){var y=T+(H-T-B)*(1-i/4),v=top*i/4;s+='<line x1="'+L+'" x2="'+(W-R)+'" y1="'+y+'" y2="'+y+'" stroke="#e3e8ee"/><text x="'+(L-6)+'" y="'+(y+4)+'" font-size="11" text-anchor="end" fill="#5b6b7c">'+(isCost?Number(v.toPrecision(3)):fmt(Math.round(v)))+'</text>'}
 ds.forEach(function(d,i){var y=H-B;teams.forEach(function(t,j){var v=val(d,t),h=(H-T-B)*v/top;if(h>0){y-=h;s+='<rect x="'+(L+i*bw+bw*.15)+'" y="'+y+'" width="'+(bw*.7)+'" height="'+h+'" fill="'+colors[j%colors.length]+'"><title>'+d+' '+esc(t)+': '+(isCost?money(v):fmt(v))+'</title></rect>'}});
  if(ds.length<=16||i%Math.ceil(ds.length/16)===0)s+='<text x="'+(L+i*bw+bw/2)+'" y="'+(H-B+14)+'" font-size="10" text-anchor="middle" fill="#5b6b7c">'+d.slice(5)+'</text>'});
 return '<div class="panel"><h2>'+esc(label)+'</h2>'+s+'</svg></div>'}
function load(ev){if(ev)ev.preventDefault();$('msg').textContent='';
 if(!$('key').value.trim()){$('msg').textContent='Type a gateway key with the admin or usage:read scope (or a team key for its own team).';return}
 sessionStorage.setItem('fgwKey',$('key').value.trim());
 Promise.all([get(url('team,app,model,class','json')),get(url('date,team','json'))]).then(function(x){render(x[0],x[1])}).catch(function(e){$('msg').textContent='Could not load the report: '+e.message})}
function render(rep,daily){
 var teams=[],byDay={},curs=[];
 daily.rows.forEach(function(r){if(teams.indexOf(r.team)<0)teams.push(r.team);if(curs.indexOf(r.currency)<0)curs.push(r.currency);
  var k=r.date+'|'+r.team;var a=byDay[k]||(byDay[k]={tok:0,cost:{}});a.tok+=r.totalTokens;a.cost[r.currency]=(a.cost[r.currency]||0)+r.cost});
 rep.rows.forEach(function(r){if(teams.indexOf(r.team)<0)teams.push(r.team)});
 teams.sort();curs.sort();var ds=days(rep.from,rep.to);
 $('teams').innerHTML=teams.map(function(t){return '<option value="'+esc(t)+'">'}).join('');
 $('legend').innerHTML=teams.map(function(t,j){return '<span><i style="background:'+colors[j%colors.length]+'"></i>'+esc(t)+'</span>'}).join('');
 var ch='';curs.forEach(function(c){if(!c)return;ch+=chart(ds,teams,function(d,t){var a=byDay[d+'|'+t];return a&&a.cost[c]||0},'Cost per day ('+c+')',true)});
 ch+=chart(ds,teams,function(d,t){var a=byDay[d+'|'+t];return a?a.tok:0},'Tokens per day',false);
 $('charts').innerHTML=ch;
 var h='';rep.rows.forEach(function(r){h+='<tr><td>'+esc(r.team)+'</td><td>'+esc(r.app)+'</td><td>'+esc(r.model)+'</td><td>'+esc(r['class'])+'</td><td>'+fmt(r.requests)+'</td><td'+(r.errors?' class="err"':'')+'>'+fmt(r.errors)+'</td><td>'+fmt(r.promptTokens)+'</td><td>'+fmt(r.cachedTokens)+'</td><td>'+fmt(r.completionTokens)+'</td><td>'+fmt(r.totalTokens)+'</td><td>'+money(r.cost)+'</td><td>'+esc(r.currency||'–')+'</td><td>'+fmt(r.cacheHits||0)+'</td><td>'+fmt(r.savedTokens||0)+'</td><td>'+money(r.savedCost||0)+'</td></tr>'});
 $('rows').innerHTML=h||'<tr><td colspan="15" style="text-align:center">No usage in this period.</td></tr>';
 var req=0,err=0,tok=0,hits=0,saved=0,f='',cards='';
 rep.totals.forEach(function(t){req+=t.requests;err+=t.errors;tok+=t.totalTokens;hits+=t.cacheHits||0;saved+=t.savedTokens||0;
  f+='<tr class="total"><td>Total '+esc(t.currency||'(unpriced)')+'</td><td></td><td></td><td></td><td>'+fmt(t.requests)+'</td><td>'+fmt(t.errors)+'</td><td>'+fmt(t.promptTokens)+'</td><td>'+fmt(t.cachedTokens)+'</td><td>'+fmt(t.completionTokens)+'</td><td>'+fmt(t.totalTokens)+'</td><td>'+money(t.cost)+'</td><td>'+esc(t.currency||'–')+'</td><td>'+fmt(t.cacheHits||0)+'</td><td>'+fmt(t.savedTokens||0)+'</td><td>'+money(t.savedCost||0)+'</td></tr>';
  if(t.currency)cards+='<div class="card cost"><small>Cost ('+esc(t.currency)+')</small><b>'+esc(t.currency)+' '+money(t.cost)+'</b></div>';
  if(t.currency&&t.savedCost)cards+='<div class="card cost"><small>Saved by the cache ('+esc(t.currency)+')</small><b>'+esc(t.currency)+' '+money(t.savedCost)+'</b></div>'});
 $('foot').innerHTML=f;
 $('cards').querySelectorAll('.cost').forEach(function(n){n.remove()});
 $('cards').insertAdjacentHTML('afterbegin',cards);
 $('treq').textContent=fmt(req);$('terr').textContent=fmt(err);$('ttok').textContent=fmt(tok);$('tteams').textContent=teams.length;$('tsaved').textContent=fmt(hits)+' · '+fmt(saved);
 document.body.setAttribute('data-loaded',String(rep.rows.length))}
$('csv').onclick=function(e){e.preventDefault();fetch(url('team,app,model,class','csv'),{headers:hdr()}).then(function(r){if(!r.ok)throw new Error(r.statusText);return r.blob()}).then(function(b){var a=document.createElement('a');a.href=URL.createObjectURL(b);a.download='usage-'+$('from').value+'-'+$('to').value+'.csv';a.click()}).catch(function(e){$('msg').textContent='CSV: '+e.message})};
$('f').onsubmit=load;if($('key').value)load();
})();
</script></body></html>
`
