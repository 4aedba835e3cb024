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
// self-contained page (no CDN) that charts tokens and cost per team per day
// from the JSON report next to it. The page holds no data; the report
// endpoint checks the key the page sends (typed in, or ?key=).
func UsagePage() echo.HandlerFunc {
	return func(c echo.Context) error {
		h := c.Response().Header()
		h.Set("Content-Security-Policy", "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src data:")
		h.Set("Cache-Control", "no-store")
		h.Set("Referrer-Policy", "no-referrer")
		return c.HTML(http.StatusOK, usagePageHTML)
	}
}

const usagePageHTML = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>Usage and cost · Foundry Gateway</title>
<style>
:root{--ink:#1d2733;--mute:#5b6b7c;--line:#e3e8ee;--bg:#f6f8fa;--card:#fff}
*{box-sizing:border-box}body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--ink);background:var(--bg)}
header{background:#12324f;color:#fff;padding:14px 24px;display:flex;align-items:baseline;gap:16px}
header h1{margin:0;font-size:19px;font-weight:600}header span{opacity:.8}
main{padding:18px 24px;max-width:1280px;margin:0 auto}
form{display:flex;flex-wrap:wrap;gap:10px;align-items:end;margin-bottom:14px}
label{display:flex;flex-direction:column;font-size:12px;color:var(--mute);gap:3px}
input{font:inherit;padding:5px 8px;border:1px solid #c5ced8;border-radius:4px}
button,a.btn{font:inherit;padding:6px 14px;border:0;border-radius:4px;background:#1f6feb;color:#fff;cursor:pointer;text-decoration:none}
a.btn{background:#57606a}
.cards{display:flex;gap:12px;margin-bottom:14px;flex-wrap:wrap}
.card{background:var(--card);border:1px solid var(--line);border-radius:6px;padding:10px 16px;min-width:180px}
.card b{display:block;font-size:22px;font-weight:600}.card small{color:var(--mute)}
.charts{display:grid;grid-template-columns:1fr 1fr;gap:12px;margin-bottom:14px}
.panel{background:var(--card);border:1px solid var(--line);border-radius:6px;padding:10px 14px}
.panel h2{font-size:14px;margin:0 0 6px}
.legend{display:flex;gap:14px;flex-wrap:wrap;font-size:12px;color:var(--mute);margin-bottom:6px}
.legend i{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:5px;vertical-align:-1px}
table{border-collapse:collapse;width:100%;background:var(--card);border:1px solid var(--line)}
th,td{padding:5px 10px;border-bottom:1px solid var(--line);text-align:right;white-space:nowrap}
th{background:#eef2f6;font-weight:600;font-size:12px}th:nth-child(-n+2),td:nth-child(-n+2){text-align:left}
tfoot td{font-weight:600;background:#f3f6f9}
#msg{color:#b42318;margin:6px 0}
.note{color:var(--mute);font-size:12px;margin-top:8px}
</style></head><body>
<header><h1>Usage and cost</h1><span>Foundry Gateway · tokens and cost per team per day (UTC)</span></header>
<main>
<form id="f"><label>Gateway key<input id="key" type="password" size="34" placeholder="fgw-…" autocomplete="off"></label>
<label>From<input id="from" type="date"></label><label>To<input id="to" type="date"></label>
<button type="submit">Show</button><a class="btn" id="csv" href="#">Download CSV</a></form>
<div id="msg"></div>
<div class="cards"><div class="card"><small>Total cost</small><b id="tcost">–</b></div>
<div class="card"><small>Total tokens</small><b id="ttok">–</b></div>
<div class="card"><small>Requests</small><b id="treq">–</b></div>
<div class="card"><small>Teams</small><b id="tteams">–</b></div></div>
<div class="legend" id="legend"></div>
<div class="charts"><div class="panel"><h2>Cost per day</h2><div id="c1"></div></div>
<div class="panel"><h2>Tokens per day</h2><div id="c2"></div></div></div>
<table><thead><tr><th>Date</th><th>Team</th><th>Requests</th><th>Prompt tokens</th><th>Cached tokens</th><th>Completion tokens</th><th>Total tokens</th><th>Cost</th></tr></thead>
<tbody id="rows"></tbody><tfoot id="foot"></tfoot></table>
<p class="note">Cost is computed per request from the configured price per million tokens: (prompt − cached) × input + cached × cached input + completion × output.
Cached tokens are part of prompt tokens. Today's figures are live; past days come from the UsageDaily table.</p>
</main>
<script>
(function(){
var $=function(id){return document.getElementById(id)};
var base=location.pathname.replace(/\/ui\/?$/,'');
var params=new URLSearchParams(location.search);
var today=new Date().toISOString().slice(0,10);
var d0=new Date(Date.now()-13*864e5).toISOString().slice(0,10);
$('key').value=params.get('key')||sessionStorage.getItem('fgwKey')||'';
$('from').value=params.get('from')||d0;$('to').value=params.get('to')||today;
var colors=['#1f6feb','#e8833a','#2da44e','#a371f7','#d1242f','#bf8700','#0a7f8c','#8250df'];
function fmt(n){return n.toLocaleString('en-US')}
function money(n,c){return (c?c+' ':'')+n.toLocaleString('en-US',{minimumFractionDigits:2,maximumFractionDigits:n<1?4:2})}
function url(f){return base+'?by=date,team&format='+f+'&from='+$('from').value+'&to='+$('to').value}
function hdr(){var k=$('key').value.trim();return k?{'Authorization':'Bearer '+k}:{}}
function days(a,b){var out=[],t=new Date(a+'T00:00:00Z'),e=new Date(b+'T00:00:00Z');for(;t<=e;t=new Date(t.getTime()+864e5))out.push(t.toISOString().slice(0,10));return out}
function chart(el,ds,teams,val,data,unit){
 var W=600,H=260,L=64,B=36,T=10,R=8,max=0;
 ds.forEach(function(d){var s=0;teams.forEach(function(t){s+=val(data[d+'|'+t])});max=Math.max(max,s)});
 if(max<=0)max=1;var step=Math.pow(10,Math.floor(Math.log10(max))),top=Math.ceil(max/step)*step;
 var bw=(W-L-R)/ds.length,s='<svg viewBox="0 0 '+W+' '+H+'" width="100%" role="img" aria-label="'+unit+'">';
 for(var i=0;i<=4;i++){var y=T+(H-T-B)*(1-i/4),v=top*i/4;s+='<line x1="'+L+'" x2="'+(W-R)+'" y1="'+y+'" y2="'+y+'" stroke="#e3e8ee"/><text x="'+(L-6)+'" y="'+(y+4)+'" font-size="11" text-anchor="end" fill="#5b6b7c">'+(unit==='cost'?v.toPrecision(3).replace(/\.?0+$/,''):fmt(Math.round(v)))+'</text>'}
 ds.forEach(function(d,i){var y=H-B;teams.forEach(function(t,j){var v=val(data[d+'|'+t]),h=(H-T-B)*v/top;if(h>0){y-=h;s+='<rect x="'+(L+i*bw+bw*.15)+'" y="'+y+'" width="'+(bw*.7)+'" height="'+h+'" fill="'+colors[j%colors.length]+'"><title>'+d+' '+t+': '+(unit==='cost'?v.toFixed(4):fmt(v))+'</title></rect>'}});
  if(ds.length<=16||i%Math.ceil(ds.length/16)===0)s+='<text x="'+(L+i*bw+bw/2)+'" y="'+(H-B+14)+'" font-size="10" text-anchor="middle" fill="#5b6b7c">'+d.slice(5)+'</text>'});
 el.innerHTML=s+'</svg>'}
function load(ev){if(ev)ev.preventDefault();$('msg').textContent='';sessionStorage.setItem('fgwKey',$('key').value);
 fetch(url('json'),{headers:hdr()}).then(function(r){return r.json().then(function(j){if(!r.ok)throw new Error((j.error&&j.error.message)||r.statusText);return j})}).then(render).catch(function(e){$('msg').textContent='Could not load the report: '+e.message})}
function render(rep){
 var data={},teams=[],cur='',tot={cost:0,tok:0,req:0};
 rep.rows.forEach(function(r){var k=r.date+'|'+r.team;var a=data[k]||(data[k]={requests:0,promptTokens:0,cachedTokens:0,completionTokens:0,totalTokens:0,cost:0});
  ['requests','promptTokens','cachedTokens','completionTokens','totalTokens','cost'].forEach(function(f){a[f]+=r[f]});
  if(teams.indexOf(r.team)<0)teams.push(r.team);cur=cur||r.currency});
 teams.sort();var ds=days(rep.from,rep.to);
 $('legend').innerHTML=teams.map(function(t,j){return '<span><i style="background:'+colors[j%colors.length]+'"></i>'+t.replace(/</g,'&lt;')+'</span>'}).join('');
 chart($('c1'),ds,teams,function(a){return a?a.cost:0},data,'cost');
 chart($('c2'),ds,teams,function(a){return a?a.totalTokens:0},data,'tokens');
 var h='';ds.slice().reverse().forEach(function(d){teams.forEach(function(t){var a=data[d+'|'+t];if(!a)return;tot.cost+=a.cost;tot.tok+=a.totalTokens;tot.req+=a.requests;
  h+='<tr><td>'+d+'</td><td>'+t.replace(/</g,'&lt;')+'</td><td>'+fmt(a.requests)+'</td><td>'+fmt(a.promptTokens)+'</td><td>'+fmt(a.cachedTokens)+'</td><td>'+fmt(a.completionTokens)+'</td><td>'+fmt(a.totalTokens)+'</td><td>'+money(a.cost,cur)+'</td></tr>'})});
 $('rows').innerHTML=h||'<tr><td colspan="8" style="text-align:center">No usage in this period.</td></tr>';
 $('foot').innerHTML='<tr><td>Total</td><td></td><td>'+fmt(tot.req)+'</td><td></td><td></td><td></td><td>'+fmt(tot.tok)+'</td><td>'+money(tot.cost,cur)+'</td></tr>';
 $('tcost').textContent=money(tot.cost,cur);$('ttok').textContent=fmt(tot.tok);$('treq').textContent=fmt(tot.req);$('tteams').textContent=teams.length;
 document.body.setAttribute('data-loaded',rep.rows.length)}
$('csv').onclick=function(e){e.preventDefault();fetch(url('csv'),{headers:hdr()}).then(function(r){if(!r.ok)throw new Error(r.statusText);return r.blob()}).then(function(b){var a=document.createElement('a');a.href=URL.createObjectURL(b);a.download='usage-'+$('from').value+'-'+$('to').value+'.csv';a.click()}).catch(function(e){$('msg').textContent='CSV: '+e.message})};
$('f').onsubmit=load;if($('key').value)load();
})();
</script></body></html>
`
